"""The frozen-anchor vector store: computed once, keyed by content, a changed anchor is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from anybind.errors import AnchorMismatchError
from anybind.train import anchor_cache
from anybind.train.anchor_cache import AnchorVectorCache, anybind_home, cached_anchor_vectors, partner_key


def test_vectors_are_computed_once_and_keyed_by_content(base_model, tmp_path: Path, monkeypatch) -> None:
    calls: list[int] = []
    real = anchor_cache.embed_partners

    def counting(model, kinds, values, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(len(values))
        return real(model, kinds, values, *args, **kwargs)

    monkeypatch.setattr(anchor_cache, "embed_partners", counting)
    cache = AnchorVectorCache(tmp_path, base_model.anchor.identity)
    texts = ["a dog", "a cat", "a dog"]
    first = cached_anchor_vectors(base_model, cache, ["caption"] * 3, texts, verify=0)
    assert calls == [2]  # the duplicate caption is embedded once
    torch.testing.assert_close(first[0], first[2])
    expected = base_model.embed("text", texts).as_subclass(torch.Tensor)
    torch.testing.assert_close(first, expected)
    reopened = AnchorVectorCache(tmp_path, base_model.anchor.identity)
    again = cached_anchor_vectors(base_model, reopened, ["caption"] * 3, texts, verify=1)
    assert calls == [2, 1]  # only the verification sample was recomputed
    torch.testing.assert_close(again, first)
    assert partner_key("caption", "a dog") != partner_key("caption", "a dog.")


def test_a_cache_of_another_anchor_is_refused(base_model, tmp_path: Path) -> None:
    AnchorVectorCache(tmp_path, base_model.anchor.identity)
    other = dataclasses.replace(base_model.anchor.identity, weights_sha256="f" * 64)
    with pytest.raises(AnchorMismatchError, match=r"holds vectors of anchor openclip:tiny:.* but this run's anchor is "
                                                  r"openclip:tiny:random-init:ffff"):
        AnchorVectorCache(tmp_path, other)


def test_changed_anchor_under_the_same_identity_is_detected(base_model, tmp_path: Path) -> None:
    cache = AnchorVectorCache(tmp_path, base_model.anchor.identity)
    cache.add([partner_key("caption", "a dog")], torch.nn.functional.normalize(torch.randn(1, base_model.dim), dim=-1))
    with pytest.raises(AnchorMismatchError, match=r"cached vectors differ from what anchor .* computes now"):
        cached_anchor_vectors(base_model, AnchorVectorCache(tmp_path, base_model.anchor.identity), ["caption"],
                              ["a dog"], verify=2)


def test_default_location_follows_anybind_home(monkeypatch, tmp_path: Path, base_model) -> None:
    monkeypatch.setenv("ANYBIND_HOME", str(tmp_path))
    assert anybind_home() == tmp_path
    cache = AnchorVectorCache.for_anchor(base_model.anchor.identity)
    assert cache.folder.parent == tmp_path / "anchor-cache" and (cache.folder / "anchor.json").is_file()
