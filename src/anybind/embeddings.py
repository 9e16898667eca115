"""`Embeddings`: a float32 tensor of unit-norm vectors that remembers its anchor space."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from anybind.errors import AnchorMismatchError


def _tensors_in(value: Any) -> Iterator[Any]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors_in(item)
    else:
        yield value


class Embeddings(torch.Tensor):
    """A ``[N, D]`` float32 tensor of unit-norm vectors in the anchor space named by `.anchor`.

    It behaves like any tensor. Results of torch operations keep the anchor key, and an
    operation that combines `Embeddings` of two different anchors raises
    `AnchorMismatchError`: vectors of different anchor spaces are not comparable.
    Use ``.as_subclass(torch.Tensor)`` for a plain tensor.
    """

    anchor: str

    @staticmethod
    def wrap(tensor: torch.Tensor, anchor: str) -> Embeddings:
        """View `tensor` as `Embeddings` of the anchor whose identity key is `anchor`."""
        out = tensor.as_subclass(Embeddings)
        out.anchor = anchor
        return out

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        anchors = {
            t.__dict__.get("anchor")
            for t in _tensors_in((args, kwargs))
            if isinstance(t, Embeddings) and t.__dict__.get("anchor") is not None
        }
        if len(anchors) > 1:
            raise AnchorMismatchError(
                f"cannot combine embeddings of different anchors: {', '.join(sorted(anchors))}; "
                "vectors of different anchor spaces are not comparable (embed both with one model)"
            )
        result = super().__torch_function__(func, types, args, kwargs)
        if anchors:
            (anchor,) = anchors
            for t in _tensors_in(result):
                if isinstance(t, Embeddings) and "anchor" not in t.__dict__:
                    t.anchor = anchor
        return result

    def __repr__(self, *, tensor_contents: Any = None) -> str:  # noqa: D105
        body = self.as_subclass(torch.Tensor).__repr__()
        return f"Embeddings(anchor={self.__dict__.get('anchor')!r}, {body})"


def anchor_of(vectors: torch.Tensor) -> str | None:
    """The anchor key carried by `vectors`, or None for a plain tensor."""
    return vectors.__dict__.get("anchor") if isinstance(vectors, Embeddings) else None


def check_same_anchor(expected: str, vectors: torch.Tensor, argument: str) -> None:
    """Raise `AnchorMismatchError` when `vectors` carry an anchor key other than `expected`."""
    got = anchor_of(vectors)
    if got is not None and got != expected:
        raise AnchorMismatchError(f"`{argument}` was embedded with anchor {got}, expected anchor {expected}")
