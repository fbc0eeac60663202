"""report.html: one self-contained file that opens offline.

Plots are inline PNG data URIs; the only script (sortable table columns) and
style are inline; a Content-Security-Policy forbids loading anything from
elsewhere, so a report that tried to would show a console error (the browser
test checks there is none).
"""

from __future__ import annotations

import base64
import html
import os
import re
import stat
from pathlib import Path
from typing import Any

from edgeprune.export.runtime.safeio import limit

CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'")

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
#verdict{background:#f3f8f3;border:1px solid #9c9;padding:.6em 1em;border-radius:4px}
#verdict ul{margin:.2em 0 .8em}
.warning{background:#fff6e5;border:1px solid #e0a030;padding:.5em 1em;margin:.6em 0;border-radius:4px}
.warning b.kind{color:#a05a00}
.wide{overflow-x:auto}table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}
caption{caption-side:top;text-align:left;font-size:12px;color:#444;padding:.3em 0;max-width:1100px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}
td:first-child,th:first-child,td.t{text-align:left}
th{background:#eee;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:13px;color:#333}
.setup{font-size:12px;color:#555}
"""

# Clicking a header sorts the rows by that column's data-v (numbers numerically, else as text); empty
# values stay last. A second click reverses the order.
SCRIPT = """
(function(){
  function val(td){var v=td.getAttribute('data-v');if(v===null||v==='')return null;
    var n=Number(v);return isNaN(n)?v:n;}
  function sortBy(th){
    var table=th.closest('table'),i=Array.prototype.indexOf.call(th.parentNode.children,th);
    var asc=th.getAttribute('aria-sort')!=='ascending',body=table.tBodies[0];
    var rows=Array.prototype.slice.call(body.rows);
    table.querySelectorAll('th').forEach(function(h){h.removeAttribute('aria-sort');});
    th.setAttribute('aria-sort',asc?'ascending':'descending');
    rows.sort(function(a,b){var x=val(a.cells[i]),y=val(b.cells[i]);
      if(x===null||y===null)return (x===null)-(y===null);
      var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y));
      return asc?c:-c;});
    rows.forEach(function(r){body.appendChild(r);});
  }
  document.querySelectorAll('table.sortable th').forEach(function(th){
    th.tabIndex=0;th.title='click to sort';
    th.addEventListener('click',function(){sortBy(th);});
    th.addEventListener('keydown',function(e){if(e.key==='Enter'){sortBy(th);}});
  });
})();
"""


def _inline(text: str) -> str:
    """Escape, then turn markdown **bold** into <strong>."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def _lines_html(lines: list[str]) -> list[str]:
    out, in_list = [], False
    for ln in lines:
        if not ln.strip():
            continue
        if ln.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(ln[2:])}</li>")
        else:
            if in_list:
                out.append("</ul>")
                in_list = False
            out.append(f"<p>{_inline(ln)}</p>")
    if in_list:
        out.append("</ul>")
    return out


def table_html(t: dict[str, Any]) -> str:
    h = [f"<div class='wide'><table class='sortable' id='{html.escape(t['id'])}'><caption>{html.escape(t['caption'])}</caption>",
         "<thead><tr>" + "".join(f"<th scope='col'>{html.escape(c)}</th>" for c in t["columns"]) + "</tr></thead><tbody>"]
    for row in t["rows"]:
        cells = []
        for text, v in row:
            dv = "" if v is None else (repr(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v))
            cls = " class='t'" if isinstance(v, str) else ""
            cells.append(f"<td{cls} data-v='{html.escape(dv)}'>{html.escape(text)}</td>")
        h.append("<tr>" + "".join(cells) + "</tr>")
    h.append("</tbody></table></div>")
    return "\n".join(h)


def _data_uri(path: Path) -> str | None:
    data = read_study_file(path.parent, path.name)  # a regular file in the study folder, never through a link
    if data is None:
        return None
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render_html(rep: dict[str, Any], images: list[str], folder: Path) -> str:
    h = ["<!doctype html><html lang='en'><head><meta charset='utf-8'>",
         f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
         "<meta name='viewport' content='width=device-width, initial-scale=1'>",
         f"<title>{html.escape(rep['title'])}</title><style>{STYLE}</style></head><body>",
         f"<h1>{html.escape(rep['title'])}</h1>",
         "<section id='verdict'><h2>Verdict</h2>"]
    h += _lines_html(rep["verdict"]["lines"])
    h.append("</section>")
    if rep["warnings"]:
        h.append(f"<section id='warnings'><h2>Warnings ({len(rep['warnings'])})</h2>")
        for w in rep["warnings"]:
            h.append(f"<div class='warning' data-kind='{html.escape(w['kind'])}'><b class='kind'>"
                     f"{html.escape(w['kind'])}</b>: {html.escape(w['title'])}<ul>"
                     + "".join(f"<li>{html.escape(e)}</li>" for e in w["evidence"]) + "</ul></div>")
        h.append("</section>")
    h.append("<h2>Headline</h2>")
    h.append(table_html(rep["tables"][0]))
    if len(rep["tables"]) > 1:
        h.append("<h2>Per backend</h2>")
        h += [table_html(t) for t in rep["tables"][1:]]
    shown = [(img, _data_uri(folder / img)) for img in images]
    shown = [(img, uri) for img, uri in shown if uri]
    if shown:
        h.append("<h2>Plots</h2>")
        for img, uri in shown:
            note = rep["figure_notes"].get(img, "")
            h.append(f"<figure><img src='{uri}' alt='{html.escape(img)}'>"
                     f"<figcaption><b>{html.escape(img)}</b>: {html.escape(note)}</figcaption></figure>")
    if rep["notes"]:
        h.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in rep["notes"]) + "</ul>")
    h.append("<h2>Setup</h2>" + "".join(f"<p class='setup'>{html.escape(s)}</p>" for s in rep["setup"]))
    h.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(h)


def read_study_file(folder: Path, name: str) -> bytes | None:
    """The bytes of the plain file ``name`` in the study folder ``folder``, or None: a name with a folder in it,
    a symbolic link (it could point anywhere: a secret would end up in the report) or anything but a regular
    file is never read. The link check and the read are one open (O_NOFOLLOW)."""
    if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(str(Path(folder) / name), flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit("doc"):
            return None
        return fh.read()
