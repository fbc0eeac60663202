"""A real OpenSSH server for tests: 127.0.0.1 only, a free high port, throw-away host and user keys.

``start_sshd(folder)`` runs ``sshd -D -f CONFIG`` (as root, which a real
login to this machine's root account needs) and returns a dict with the
port, an ssh client config (``Host testboard``, and ``Host 127.0.0.1`` for
``root@127.0.0.1:PORT``) that pins the throw-away host key, and the keys;
``stop_sshd`` ends it. Skips with the reason when sshd is not installed
(CI installs openssh-server: .ci/run) or the tests do not run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeprune-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=60)


def start_sshd(folder: Path) -> dict:
    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
    if sshd is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server/client not installed (apt-get install openssh-server openssh-client)")
    if os.geteuid() != 0:
        pytest.skip("the test sshd logs in to this machine's root account, so the tests must run as root")
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    for name in ("host_key", "user_key", "other_key"):
        _keygen(folder / name)
    auth = folder / "authorized_keys"
    auth.write_text((folder / "user_key.pub").read_text())
    auth.chmod(0o600)
    port = _free_port()
    cfg = folder / "sshd_config"
    cfg.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {folder / 'host_key'}
PidFile {folder / 'sshd.pid'}
AuthorizedKeysFile {auth}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
AllowTcpForwarding no
X11Forwarding no
PermitTunnel no
Subsystem sftp internal-sftp
LogLevel ERROR
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    log = open(folder / "sshd.log", "wb")
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 20
    while True:
        if proc.poll() is not None:
            log.close()
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()[-500:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if time.time() > deadline:
                proc.kill()
                raise RuntimeError("sshd did not start listening")
            time.sleep(0.1)
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(folder / 'host_key.pub').read_text().split(' edgeprune')[0]}\n")
    client = folder / "ssh_config"
    common = f"""  User root
  UserKnownHostsFile {known}
  StrictHostKeyChecking yes
  GlobalKnownHostsFile /dev/null
  IdentitiesOnly yes
  LogLevel ERROR
"""
    client.write_text(f"Host testboard\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {folder / 'user_key'}\n"
                      + common + f"\nHost 127.0.0.1\n  IdentityFile {folder / 'user_key'}\n" + common)
    wrong = folder / "ssh_config_wrong_key"
    wrong.write_text(f"Host testboard\n  HostName 127.0.0.1\n  Port {port}\n  IdentityFile {folder / 'other_key'}\n"
                     + common)
    return {"proc": proc, "log": log, "port": port, "config": client, "wrong_key_config": wrong, "folder": folder}


def stop_sshd(info: dict) -> None:
    proc = info["proc"]
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    info["log"].close()
