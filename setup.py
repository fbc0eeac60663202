"""What pyproject.toml cannot declare.

- **Where the packages go.** The repository keeps ``export/`` and ``profiling/`` beside ``edgeprune/``; installed,
  they are ``edgeprune.export`` and ``edgeprune.profiling``, so no generic top-level name is claimed in
  site-packages (``edgeprune/__init__.py`` makes a source checkout import them by the same names).
- **The optional compiled HisarMod CSV parser.** ``optional=True``: where no C compiler or no Python headers exist,
  the build warns and goes on without it, and edgeprune reads HisarMod CSV with numpy instead (about 9x slower per
  core, the same numbers).
"""

from setuptools import Extension, find_packages, setup

SIBLINGS = ("export", "profiling")
packages = find_packages(include=["edgeprune", "edgeprune.*"])
for top in SIBLINGS:
    packages += [f"edgeprune.{p}" for p in find_packages(include=[top, f"{top}.*"])]

setup(
    packages=packages,
    package_dir={f"edgeprune.{top}": top for top in SIBLINGS},
    package_data={"edgeprune": ["py.typed"], "edgeprune.export": ["py.typed"], "edgeprune.profiling": ["py.typed"],
                  "edgeprune.export.grblocks": ["*.block.yml"]},
    ext_modules=[Extension("edgeprune.data._hisarparse", ["edgeprune/data/_hisarparse.c"], optional=True)],
)
