"""Training: bind a modality's encoder to a frozen anchor (`bind`, ``anybind train``), and train a
LiT anchor's image tower against its frozen text model (`lit.train_anchor`, ``anybind train-anchor``).

Both are objectives of one loop, `run.TrainingRun` (optimizer, schedule, precision, input
pipeline, checkpoints, metrics); `loop.BindingRun` and `lit.LiTRun` say what differs. Reusable
pieces: `manifest` (paired CSV/JSONL rows, validation, split), `anchor_cache` (frozen vectors on disk), `losses` (InfoNCE/SigLIP with a learnable scale),
`checkpoints` (atomic nested-state checkpoints, RNG capture), `run_dir` (run folder guard rails,
metrics log) and `bundle` (write a folder `anybind.load` reads).
"""

from anybind.train.config import BindConfig as BindConfig
from anybind.train.config import load_bind_config as load_bind_config
from anybind.train.loop import BindResult as BindResult
from anybind.train.loop import bind as bind
