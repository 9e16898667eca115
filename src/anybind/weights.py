"""Helpers shared by everything that builds or loads weights: seeded random init and strict
state-dict comparison with messages that name the keys."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
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


def shape_mismatch(key: str, given: Sequence[int], expected: Sequence[int]) -> str:
    """One shape-mismatch entry of `format_mismatch`: ``"key: checkpoint (a, b) vs model (c, d)"``."""
    return f"{key}: checkpoint {tuple(given)} vs model {tuple(expected)}"


def format_mismatch(missing: Sequence[str], unexpected: Sequence[str], shapes: Sequence[str] = (),
                    limit: int = 8) -> str | None:
    """The one wording of a state-dict mismatch: None when all three lists are empty; else the non-empty
    parts of ``"missing keys [...], unexpected keys [...], shape mismatches (first N of M): a; b"``, with at
    most `limit` sorted keys of each kind (``...`` when cut) and `limit` // 2 shape entries (`shape_mismatch`)."""

    def listed(names: Sequence[str]) -> str:
        ordered = sorted(names)
        return f"{ordered[:limit]}{' ...' if len(ordered) > limit else ''}"

    shown = list(shapes[:max(1, limit // 2)])
    parts = ([f"missing keys {listed(missing)}"] if missing else []) + \
        ([f"unexpected keys {listed(unexpected)}"] if unexpected else []) + \
        ([f"shape mismatches (first {len(shown)} of {len(shapes)}): {'; '.join(shown)}"] if shapes else [])
    return ", ".join(parts) or None


def describe_mismatch(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor],
                      limit: int = 8, ignore_prefixes: tuple[str, ...] = ()) -> str | None:
    """None when `given` has exactly the keys and shapes of `expected`; else the `format_mismatch`
    message naming the missing keys, unexpected keys and shape mismatches (at most `limit` of each).
    Keys starting with one of `ignore_prefixes` (e.g. a locked body's ``"backbone."``) are not compared."""
    expected = {k: v for k, v in expected.items() if not k.startswith(ignore_prefixes)} if ignore_prefixes else expected
    given = {k: v for k, v in given.items() if not k.startswith(ignore_prefixes)} if ignore_prefixes else given
    shapes = [shape_mismatch(k, given[k].shape, expected[k].shape)
              for k in sorted(set(given) & set(expected)) if given[k].shape != expected[k].shape]
    return format_mismatch(sorted(set(expected) - set(given)), sorted(set(given) - set(expected)), shapes, limit)


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
