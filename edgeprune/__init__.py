"""edgeprune: layer pruning and edge deployment for signal-classification networks.

The package root imports nothing heavy: ``edgeprune.errors`` and
``edgeprune.atomic`` are torch-free so the device side (``export``,
``profiling``) can use them on a board that has no torch.
"""

__version__ = "0.1.0"
