"""The command line: a thin layer over the Python API.

Each ``cmd_*.py`` module in this package defines ``ORDER`` (position in
``--help``) and ``register(subparsers, common)``, and sets ``func`` on its
parser. Modules import heavy packages (torch, onnx) inside their handlers
only, so device-side commands (predict, profile) run where torch is absent.
"""

from .main import main  # noqa: F401
