"""Model zoo: architecture as data (specs), a builder, MACs and parameter counts."""

from .modular import build_recipe
from .spec import infer_shapes, validate_spec  # noqa: F401  (torch-free)
from .zoo import ZOO, make_spec, zoo_names  # noqa: F401  (torch-free)


def build_model(spec):
    """Build an ``nn.Module`` from a spec or a module recipe (imports torch; random weights)."""
    if isinstance(spec, dict) and spec.get("kind") == "module":
        return build_recipe(spec)
    from .net import EdgeNet

    return EdgeNet(spec)
