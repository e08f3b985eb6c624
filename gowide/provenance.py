"""What every result file carries: versions, machine and device, next to config and seed."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys


def machine_description() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        # The instruction set torch's and oneDNN's kernels run with: results can depend on it
        # (docs/reliability.md, the oneDNN AVX2 hazard).
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def versions() -> dict:
    import matplotlib
    import numpy
    import scipy
    import torch

    from gowide import __version__

    return {
        "gowide": __version__,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "matplotlib": matplotlib.__version__,
    }


def provenance(device: str = "cpu") -> dict:
    """A block to store under ``"provenance"`` in every result file."""
    return {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "device": device,
        "machine": machine_description(),
        "versions": versions(),
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
    }
