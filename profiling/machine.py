"""What machine a measurement was taken on (torch-free).

Every latency record carries this, so results from a Jetson and an x86 box
can sit in one file and never be confused. The one definition lives in the
device runtime (``export.runtime.machine``), shared with a bundle's run.py.
"""

from __future__ import annotations

from export.runtime.machine import _cpu_model, _physical_cores, cpu_label, jetson_model, machine_info  # noqa: F401

_jetson_model = jetson_model
