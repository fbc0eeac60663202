"""The one thing pyproject.toml cannot declare: the optional compiled HisarMod CSV parser.

``optional=True``: where no C compiler or no Python headers exist, the build warns and goes on without it, and
edgeprune reads HisarMod CSV with numpy instead (about 9x slower per core, the same numbers).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("edgeprune.data._hisarparse", ["edgeprune/data/_hisarparse.c"], optional=True)])
