"""Zero-shot API: template ensembling, logit scale, shipped class lists, bad-input table."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from anybind import InputError, UnknownNameError
from anybind.config import load_templates
from anybind.zero_shot import load_class_list, zero_shot

IMAGES = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_probabilities_match_manual_template_ensemble(tiny_model: Any) -> None:
    classes, templates = ["dog", "cat", "lamp"], ["a photo of a {}.", "a drawing of a {}."]
    probabilities = tiny_model.zero_shot("image", IMAGES, classes, templates=templates)
    assert probabilities.shape == (3, 3)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))
    text = tiny_model.embed("text", [t.format(c) for c in classes for t in templates]).as_subclass(torch.Tensor)
    class_vectors = F.normalize(text.reshape(3, 2, -1).mean(dim=1), dim=-1)
    images = tiny_model.embed("image", IMAGES).as_subclass(torch.Tensor)
    expected = (tiny_model.logit_scale("image") * images @ class_vectors.T).softmax(dim=-1)
    torch.testing.assert_close(probabilities, expected)


def test_class_list_name_and_default_templates(tiny_model: Any) -> None:
    probabilities = zero_shot(tiny_model, "image", IMAGES[:2], "nyu-depth-v2-scenes")
    assert probabilities.shape == (2, 10)
    classes = list(load_class_list("nyu-depth-v2-scenes").classes)
    default_set = zero_shot(tiny_model, "image", IMAGES[:2], classes, templates=list(load_templates("image")))
    torch.testing.assert_close(probabilities, default_set)  # the image modality's default set was used
    other_set = zero_shot(tiny_model, "image", IMAGES[:2], classes, templates=["{}"])
    assert not torch.allclose(probabilities, other_set)  # ...and the templates make a difference


@pytest.mark.parametrize(("name", "count", "first", "last"), [
    ("esc50", 50, "dog", "hand saw"),
    ("modelnet40", 40, "airplane", "Xbox"),
    ("nyu-depth-v2-scenes", 10, "bedroom", "other room"),
])
def test_shipped_class_lists(name: str, count: int, first: str, last: str) -> None:
    class_list = load_class_list(name)
    assert len(class_list.classes) == len(set(class_list.classes)) == len(class_list.labels) == count
    assert (class_list.classes[0], class_list.classes[-1]) == (first, last)


@pytest.mark.parametrize(("classes", "templates", "error", "message"), [
    ([], None, InputError, r"`class_names`: expected a non-empty list"),
    (["dog", ""], None, InputError, r"`class_names\[1\]`: expected a non-empty string"),
    (["dog", "dog"], None, InputError, r"`class_names`: duplicate names \['dog'\]"),
    ("esc-50", None, UnknownNameError, r"unknown class list 'esc-50'; did you mean 'esc50'"),
    (["dog"], ["a photo"], InputError, r"`templates\[0\]`: expected a string with exactly one '\{\}'"),
    (["dog"], [], InputError, r"`templates`: expected a non-empty list"),
    (["dog"], "no-such-set", UnknownNameError, r"unknown template set 'no-such-set'"),
])
def test_bad_zero_shot_input(tiny_model: Any, classes: Any, templates: Any, error: type[Exception],
                             message: str) -> None:
    with pytest.raises(error, match=message):
        tiny_model.zero_shot("image", IMAGES[:1], classes, templates=templates)
