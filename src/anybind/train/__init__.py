"""Training: bind a modality's encoder to a frozen anchor (`bind`, ``anybind train``).

Reusable pieces for other trainers: `manifest` (paired CSV/JSONL rows, validation, split),
`anchor_cache` (frozen vectors on disk), `losses` (InfoNCE/SigLIP with a learnable scale),
`checkpoints` (atomic nested-state checkpoints, RNG capture), `run_dir` (run folder guard rails,
metrics log) and `bundle` (write a folder `anybind.load` reads).
"""

from anybind.train.config import BindConfig as BindConfig
from anybind.train.config import load_bind_config as load_bind_config
from anybind.train.loop import BindResult as BindResult
from anybind.train.loop import bind as bind
