"""The in-memory input cache: each key loaded once, batches rebuilt exactly, bad shapes refused."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from anybind.errors import InputError
from anybind.train.input_cache import InputCache


def test_each_key_is_loaded_once_and_batches_are_rebuilt_in_order() -> None:
    calls: list[list[str]] = []

    def load(keys: list[str]) -> dict[str, torch.Tensor]:
        calls.append(list(keys))
        values = torch.tensor([[float(ord(k))] for k in keys])
        return {"x": values, "mask": values > 98}

    cache = InputCache(load)
    first = cache(["a", "b", "a"])
    second = cache(["c", "b"])
    assert calls == [["a", "b"], ["c"]] and len(cache) == 3
    assert first["x"].flatten().tolist() == [97.0, 98.0, 97.0]
    assert second["mask"].flatten().tolist() == [True, False]


@pytest.mark.parametrize(("loaded", "message"), [
    ([torch.zeros(1, 3), torch.zeros(1, 4)], r"`data.cache_inputs`: items have different shapes"),
    ("not a tensor", r"`data.cache_inputs`: the modality's loader returned str"),
])
def test_unsuitable_loaders_are_refused(loaded: Any, message: str) -> None:
    results = iter(loaded if isinstance(loaded, list) else [loaded])
    cache = InputCache(lambda keys: next(results))
    with pytest.raises(InputError, match=message):
        cache(["a"])
        cache(["b", "a"])
