"""What every benchmark here shares: a one-line description of the machine and a timing loop.

The scripts run as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they import
this module as ``machine``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def describe_machine() -> str:
    """CPU model, the flags that decide kernels (see `anybind.index.kernels`), logical CPUs,
    torch's CPU capability and the load average right now."""
    import torch

    from anybind.index.kernels import detect_cpu

    cpu = detect_cpu()
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{cpu.model} [{' '.join(cpu.decisive_flags()) or 'no decisive flags'}], {os.cpu_count()} logical CPUs, "
            f"torch {torch.__version__} capability {torch.backends.cpu.get_cpu_capability()}, load average {load}")


def timed_runs(work: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds (by `clock`: wall time, or e.g. `time.process_time` for CPU time) of each of
    `repeats` runs of `work()`, after one untimed warm-up run."""
    work()
    times = []
    for _ in range(repeats):
        start = clock()
        work()
        times.append(clock() - start)
    return times
