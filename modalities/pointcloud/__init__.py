"""The ``pointcloud`` modality: point clouds and meshes, zero-shot through PointCLIP-style depth views.

Loading (`loader`): files or arrays -> ``[B, num_points, 3]`` clouds in the unit sphere, z up.
Projection (`projection`): `project_to_views`, `save_views` (PointCLIP V1 and V2 renderings).
Encoders (`encoders`): ``projection`` (frozen anchor image tower over the views, fused).
Honest tuning (`tuning`): `tune_view_weights` chooses view weights and templates on a held-out split.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anybind.errors import InputError
from anybind.modalities.pointcloud.config import PointCloudPreprocess as PointCloudPreprocess
from anybind.modalities.pointcloud.encoders import ProjectionEncoder as ProjectionEncoder
from anybind.modalities.pointcloud.loader import ACCEPTS, UP_AXES, prepare_points, read_points
from anybind.modalities.pointcloud.projection import project_to_views as project_to_views
from anybind.modalities.pointcloud.projection import save_views as save_views
from anybind.modalities.pointcloud.tuning import tune_view_weights as tune_view_weights
from anybind.modality import Modality
from anybind.registry import register_modality

LOAD_OPTIONS = ("up_axis", "num_points", "seed", "normalize")


@register_modality("pointcloud")
class PointCloudModality(Modality):
    """Point clouds and meshes -> ``[B, num_points, 3]`` float32 clouds (centered, unit sphere, z up).

    Loader options (``model.embed("pointcloud", items, up_axis="y")``): `up_axis` ("z" or "y"),
    `num_points`, `seed` (surface sampling / subsampling), `normalize` (bool); defaults come from
    ``configs/preprocess/pointcloud/default.yaml``.
    """

    accepts = ACCEPTS
    Preprocess = PointCloudPreprocess
    default_preprocess = "default"
    default_encoder = "projection"
    default_batch_size = 16
    default_templates = "pointcloud"

    item_ndim = 2  # an [N, 3] cloud; [B, N, 3] is B clouds
    batch_rule = "one array is one [N, 3] (or [N, C > 3]) cloud; several clouds are a list or a [B, N, 3] array"
    deterministic_load = True  # no augmentation: the trainer caches loaded inputs
    # Held-out tuning of view weights and templates, reached through the registered class by
    # callers that must not import plugins (anybind.eval).
    tune_on_held_out = staticmethod(tune_view_weights)

    def as_items(self, inputs: Any, batched: bool | None = None) -> list[Any]:
        """As `Modality.as_items`; a trimesh object is one item."""
        if not isinstance(inputs, (str, Path, Sequence)) and hasattr(inputs, "vertices"):
            return [inputs]  # a trimesh object is one item
        return super().as_items(inputs, batched)

    def load(self, items: Sequence[Any], **options: Any) -> torch.Tensor:
        """Items -> ``[B, num_points, 3]`` float32 clouds (CPU)."""
        unknown = sorted(set(options) - set(LOAD_OPTIONS))
        if unknown:
            raise InputError(f"pointcloud inputs take options {', '.join(LOAD_OPTIONS)}; got unknown {', '.join(unknown)}")
        preprocess: PointCloudPreprocess = self.preprocess
        up_axis = options.get("up_axis", preprocess.up_axis)
        count = options.get("num_points", preprocess.num_points)
        seed = options.get("seed", preprocess.seed)
        normalize = options.get("normalize", preprocess.normalize)
        if up_axis not in UP_AXES:
            raise InputError(f"`up_axis`: expected one of {', '.join(map(repr, UP_AXES))}, got {up_axis!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 2:
            raise InputError(f"`num_points`: expected an integer >= 2, got {count!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InputError(f"`seed`: expected an integer, got {seed!r}")
        if not isinstance(normalize, bool):
            raise InputError(f"`normalize`: expected True or False, got {normalize!r}")
        clouds = []
        for index, item in enumerate(items):
            argument = f"inputs[{index}]"
            raw = read_points(item, argument, count, seed)
            clouds.append(prepare_points(raw, count=count, seed=seed, up_axis=up_axis, normalize=normalize,
                                         argument=argument))
        return torch.from_numpy(np.stack(clouds))
