"""Helpers shared by everything that builds or loads weights: seeded random init and strict
state-dict comparison with messages that name the keys."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (e.g. a model's random init) with torch's CPU RNG seeded, then restore the caller's RNG."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.random.set_rng_state(state)


def describe_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
                      limit: int = 8) -> str | None:
    """None when `given` has exactly the keys and shapes of `expected`; else a message naming the
    missing keys, unexpected keys and shape mismatches (at most `limit` of each)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = [f"{k}: checkpoint {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
              for k in sorted(set(given) & set(expected)) if given[k].shape != expected[k].shape]
    if not (missing or unexpected or shapes):
        return None

    def listed(names: list[str]) -> str:
        return f"{names[:limit]}{' ...' if len(names) > limit else ''}"

    return (f"missing keys {listed(missing)}, unexpected keys {listed(unexpected)}"
            + (f", shape mismatches {shapes[:limit // 2]}" if shapes else ""))


def read_safetensors(path: Path, argument: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; `InputFileError`/`CheckpointError` naming `argument` if it
    is missing or unreadable."""
    from safetensors.torch import load_file

    from anybind.errors import CheckpointError, InputFileError

    if not path.is_file():
        raise InputFileError(f"`{argument}`: weights file {str(path)!r} does not exist")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"`{argument}`: {str(path)!r} is not a readable safetensors file ({error})") from None


def explain_torch_load_error(error: BaseException) -> str:
    """A short reason why ``torch.load(..., weights_only=True)`` refused a file, for anybind's messages.

    torch's own text advises re-running with ``weights_only=False``; anybind never passes that
    advice on (it would run whatever code the file holds), so only the cause is kept.
    """
    text = str(error)
    if "Weights only load failed" in text:
        detail = next((line.strip() for line in text.splitlines()
                       if line.strip().startswith(("Unsupported", "Trying to load unsupported"))), "")
        return ("it is not a plain tensor checkpoint: the weights-only reader refused its contents"
                + (f" ({detail})" if detail else "") + "; anybind never unpickles arbitrary objects")
    if isinstance(error, EOFError) or not text.strip():
        return f"the file is empty or ends early ({type(error).__name__})"
    return f"{type(error).__name__}: {text.strip().splitlines()[0]}"
