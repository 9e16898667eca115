"""``train.precision: auto``: bf16 autocast where the hardware makes it faster, fp32 elsewhere.

- CUDA: bf16 when the device supports it (`torch.cuda.is_bf16_supported`), else fp32.
- CPU: bf16 only when the CPU has native bf16 instructions (oneDNN reports it, e.g. AVX512-BF16
  or AMX) *and* a timed probe of the actual training step is at least `BF16_MIN_SPEEDUP` times
  faster in bf16; otherwise fp32 (emulated bf16 is slower than fp32).
- other devices: fp32.

The choice and its reason go to the run log; a resumed run keeps the choice of its checkpoint.
A CPU measurement is remembered under ``$ANYBIND_HOME/precision/`` per (CPU, torch version,
encoder, batch shape), so reruns of a recipe on one machine make the same choice (timings vary).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from anybind.atomic import atomic_write_json
from anybind.config import anybind_home
from anybind.train.input_cache import content_digest

BF16_MIN_SPEEDUP = 1.1  # a smaller measured gain is within timing noise: keep fp32's exactness
PROBE_REPEATS = 2  # timed training steps per precision (after one warm-up step each); the fastest counts


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on `device` when `precision` is ``"bf16"``, else a no-op."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_has_native_bf16() -> bool:
    """True when oneDNN can run bf16 natively on this CPU (AVX512-BF16 / AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo``), else `platform.processor()`."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def choose_precision(requested: str, device: torch.device, time_step: Callable[[str], float] | None = None,
                     workload: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """(``"fp32"`` or ``"bf16"``, the reason in words) for `requested` on `device`.

    `time_step(precision)` returns the seconds of one training step in that precision (used
    only for ``auto`` on a CPU with native bf16); `workload` describes the step (encoder, batch
    shape) so that the measured choice is remembered for it.
    """
    if requested != "auto":
        return requested, "set in the recipe"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", f"CUDA device {torch.cuda.get_device_name(device)} supports bf16"
        return "fp32", f"CUDA device {torch.cuda.get_device_name(device)} lacks bf16"
    if device.type != "cpu":
        return "fp32", f"no bf16 rule for device type {device.type!r}"
    if not cpu_has_native_bf16():
        return "fp32", "this CPU has no native bf16 instructions"
    if time_step is None:
        return "fp32", "CPU has native bf16 but no step was timed"
    record = None
    if workload is not None:
        key = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__, **dict(workload)}
        record = anybind_home() / "precision" / (content_digest(key)[:24] + ".json")
        with contextlib.suppress(OSError, ValueError, KeyError):
            remembered = json.loads(record.read_text())
            return remembered["precision"], remembered["reason"] + f" (measured earlier, remembered in {record})"
    choice = _measure(time_step)
    if record is not None:
        with contextlib.suppress(OSError):
            atomic_write_json(record, {"precision": choice[0], "reason": choice[1], "workload": key})
    return choice


def _measure(time_step: Callable[[str], float]) -> tuple[str, str]:
    for precision in ("fp32", "bf16"):
        time_step(precision)  # warm-up: allocations, kernel selection
    runs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for _ in range(PROBE_REPEATS):  # interleaved, so load from other processes hits both alike
        for precision in runs:
            runs[precision].append(time_step(precision))
    seconds = {precision: min(values) for precision, values in runs.items()}
    speedup = seconds["fp32"] / max(seconds["bf16"], 1e-9)
    measured = (f"timed steps: fp32 {seconds['fp32'] * 1000:.0f} ms, bf16 {seconds['bf16'] * 1000:.0f} ms "
                f"({speedup:.2f}x)")
    if speedup >= BF16_MIN_SPEEDUP:
        return "bf16", f"CPU has native bf16 and it is faster: {measured}"
    return "fp32", f"CPU has native bf16 but it is not >= {BF16_MIN_SPEEDUP}x faster: {measured}"


def timed(step: Callable[[], Any]) -> float:
    """Seconds taken by `step()`."""
    started = time.perf_counter()
    step()
    return time.perf_counter() - started
