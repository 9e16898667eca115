"""CPU capability detection and the low-precision scan kernels of the ``fast`` backend.

The ``fast`` backend scans every row in low precision, keeps a shortlist per query, and re-ranks
the shortlist in float32. Which low-precision kernel is fastest depends on the CPU:

============================ ====================================================================
path                         used when (first match)
============================ ====================================================================
``bf16-onednn``              AMX-BF16 tiles (Intel Sapphire Rapids+): bf16 matmul through oneDNN
``int8-fbgemm``              AVX512-VNNI or AVX-VNNI: fbgemm int8 GEMM, full 8-bit range
``int8-fbgemm-7bit``         AVX2 without VNNI: fbgemm int8 with 7-bit queries (no int16 overflow)
``bf16-onednn``              AVX512-BF16 without VNNI (no such CPU is known; kept for completeness)
``fp32``                     anything else (no quantized engine): the float32 scan itself
============================ ====================================================================

Why int8 and not bf16 on CPUs with AVX512-BF16 and VNNI (AMD Zen 4, Cooper Lake): one
``vpdpbusd`` does 4 multiply-adds per 32-bit lane, one ``vdpbf16ps`` 2. Measured on an AMD EPYC
Zen 4, 2 threads, shared machine: peak int8 505 Gop/s vs bf16 295 GFLOP/s; a 1M x 512, 1,000-query
search took 8.8 CPU-s in int8 vs 10.6 in bf16 (faiss IndexFlatIP 25.6), the same ids after
re-ranking. bf16 packs the rows faster (about 1 vs 7 CPU-s per million rows, once per index).
AMX bf16 tiles out-run AVX-512 int8, so AMX machines take bf16. ``bench/retrieval.py --paths all``
times every path.
"""

from __future__ import annotations

import functools
import os
import platform
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import torch

from anybind.errors import InputError

# The flags that decide the scan path, as Linux /proc/cpuinfo spells them.
DECISIVE_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2", "fma")
# torch.backends.cpu.get_cpu_capability() -> flags implied (used where /proc/cpuinfo is missing).
_CAPABILITY_FLAGS = {"AVX512": ("avx512f", "avx2", "fma"), "AVX2": ("avx2", "fma")}


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU offers: its model name and instruction-set flags (Linux /proc/cpuinfo names)."""

    model: str
    flags: frozenset[str]
    source: str  # where the flags came from: "/proc/cpuinfo" or "torch" (coarser)

    def has(self, flag: str) -> bool:
        """Whether the CPU reports `flag` (e.g. ``"avx512_vnni"``)."""
        return flag in self.flags

    def decisive_flags(self) -> list[str]:
        """The flags among `DECISIVE_FLAGS` this CPU has, in that order."""
        return [flag for flag in DECISIVE_FLAGS if flag in self.flags]


def _read_cpuinfo(path: Path) -> tuple[str, frozenset[str]] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    model, flags = "", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return (model, flags) if flags else None


@functools.lru_cache(maxsize=1)
def detect_cpu() -> CpuInfo:
    """The host CPU's model and flags: /proc/cpuinfo on Linux, else torch's coarse capability level."""
    found = _read_cpuinfo(Path("/proc/cpuinfo"))
    if found is not None:
        return CpuInfo(model=found[0] or platform.processor() or "unknown", flags=found[1], source="/proc/cpuinfo")
    capability = torch.backends.cpu.get_cpu_capability()
    return CpuInfo(model=platform.processor() or platform.machine() or "unknown",
                   flags=frozenset(_CAPABILITY_FLAGS.get(capability, ())), source="torch")


class ScanKernel(ABC):
    """A low-precision inner-product scan: pack row blocks once, then score query blocks against them."""

    name: str = ""
    description: str = ""

    def available(self) -> bool:
        """Whether this torch build can run the kernel at all (on any CPU, possibly slowly)."""
        return True

    @abstractmethod
    def pack(self, rows: torch.Tensor) -> object:
        """``[R, D]`` float32 rows -> the kernel's packed copy (kept for every later search)."""

    @abstractmethod
    def scores(self, queries: torch.Tensor, packed: object) -> torch.Tensor:
        """``[B, D]`` float32 queries x packed rows -> ``[B, R]`` float32 approximate inner products."""


class Float32Scan(ScanKernel):
    """The float32 scan itself (no packing, no approximation)."""

    name = "fp32"
    description = "float32 matmul (BLAS)"

    def pack(self, rows: torch.Tensor) -> object:
        """Keep the rows as they are (a view, no copy)."""
        return rows

    def scores(self, queries: torch.Tensor, packed: object) -> torch.Tensor:
        """Exact float32 inner products."""
        assert isinstance(packed, torch.Tensor)
        return queries @ packed.T


class Bfloat16Scan(ScanKernel):
    """bf16 rows and queries, bf16 matmul through oneDNN (AMX tiles or AVX512-BF16 where present)."""

    name = "bf16-onednn"
    description = "bf16 matmul (oneDNN)"

    def available(self) -> bool:
        """Needs a torch build with oneDNN."""
        return bool(torch.backends.mkldnn.is_available())

    def pack(self, rows: torch.Tensor) -> object:
        """A bf16 copy of the rows (half the bytes of float32)."""
        return rows.to(torch.bfloat16)

    def scores(self, queries: torch.Tensor, packed: object) -> torch.Tensor:
        """bf16 products with float32 accumulation, rounded to bf16 (relative error <= 2^-8), as float32."""
        assert isinstance(packed, torch.Tensor)
        return (queries.to(torch.bfloat16) @ packed.T).float()


class Int8Scan(ScanKernel):
    """int8 rows (symmetric, one scale per row) x dynamically quantized queries: fbgemm's int8 GEMM.

    `reduce_range` quantizes queries to 7 bits, which the AVX2 kernels (16-bit intermediate sums)
    need to avoid overflow; VNNI kernels accumulate in 32 bits and use the full 8-bit range.
    """

    def __init__(self, reduce_range: bool) -> None:
        self.reduce_range = reduce_range
        self.name = "int8-fbgemm-7bit" if reduce_range else "int8-fbgemm"
        self.description = "int8 GEMM (fbgemm, 7-bit queries)" if reduce_range else "int8 GEMM (fbgemm, VNNI)"

    def available(self) -> bool:
        """Needs a quantized engine that runs dynamic int8 linear layers (fbgemm/x86/onednn)."""
        return bool(set(torch.backends.quantized.supported_engines) & {"fbgemm", "x86", "onednn"})

    def pack(self, rows: torch.Tensor) -> object:
        """Prepacked int8 weights: symmetric per-row scales (the largest magnitude maps to 127)."""
        scale = (rows.abs().amax(dim=1) / 127.0).clamp_min(1e-12).double()
        quantized = torch.quantize_per_channel(rows, scale, torch.zeros(len(rows), dtype=torch.long), 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(quantized, None)

    def scores(self, queries: torch.Tensor, packed: object) -> torch.Tensor:
        """Approximate float32 inner products (queries quantized per call, per tensor)."""
        return torch.ops.quantized.linear_dynamic(queries, packed, self.reduce_range)


SCAN_KERNELS: dict[str, ScanKernel] = {kernel.name: kernel for kernel in (
    Bfloat16Scan(), Int8Scan(reduce_range=False), Int8Scan(reduce_range=True), Float32Scan())}
PATH_ENV = "ANYBIND_SCAN_PATH"  # force a path for every fast index in this process (tests, benchmarks)


@dataclass(frozen=True)
class ScanChoice:
    """The scan path chosen for this machine and why."""

    kernel: ScanKernel
    reason: str

    @property
    def name(self) -> str:
        """The path name, e.g. ``"int8-fbgemm"``."""
        return self.kernel.name


def choose_scan_path(cpu: CpuInfo | None = None, requested: str | None = None) -> ScanChoice:
    """The fastest available scan path for `cpu` (default: this one), or the `requested` path.

    `requested` (or the ``ANYBIND_SCAN_PATH`` environment variable) names a path of
    `SCAN_KERNELS` or ``"auto"``; a requested path runs even where it is slow (e.g. bf16 without
    native bf16), which is how the paths of other CPUs are tested.
    """
    requested = requested or os.environ.get(PATH_ENV) or "auto"
    if requested != "auto":
        if requested not in SCAN_KERNELS:
            raise InputError(f"`scan_path`: expected 'auto' or one of {', '.join(map(repr, SCAN_KERNELS))}, "
                             f"got {requested!r}")
        kernel = SCAN_KERNELS[requested]
        if not kernel.available():
            raise InputError(f"`scan_path`: {requested!r} needs a torch build with "
                             f"{'oneDNN' if isinstance(kernel, Bfloat16Scan) else 'a quantized CPU engine'}, "
                             "which this one lacks")
        return ScanChoice(kernel, "requested")
    cpu = cpu or detect_cpu()
    bf16, int8, int8_7bit = SCAN_KERNELS["bf16-onednn"], SCAN_KERNELS["int8-fbgemm"], SCAN_KERNELS["int8-fbgemm-7bit"]
    if cpu.has("amx_bf16") and bf16.available():
        return ScanChoice(bf16, "AMX-BF16 tiles")
    if (cpu.has("avx512_vnni") or cpu.has("avx_vnni")) and int8.available():
        return ScanChoice(int8, "AVX512-VNNI" if cpu.has("avx512_vnni") else "AVX-VNNI")
    if cpu.has("avx2") and int8_7bit.available():
        return ScanChoice(int8_7bit, "AVX2 without VNNI")
    if cpu.has("avx512_bf16") and bf16.available():
        return ScanChoice(bf16, "AVX512-BF16")
    return ScanChoice(SCAN_KERNELS["fp32"], "no int8/bf16 acceleration found")
