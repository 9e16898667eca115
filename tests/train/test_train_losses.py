"""The contrastive losses: CLIP temperature init and clamp, InfoNCE value, SigLIP init."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from anybind.errors import InputError
from anybind.train.config import LossConfig
from anybind.train.losses import ContrastiveLoss


def test_infonce_matches_the_symmetric_cross_entropy() -> None:
    torch.manual_seed(0)
    a = F.normalize(torch.randn(6, 8), dim=-1)
    b = F.normalize(torch.randn(6, 8), dim=-1)
    loss = ContrastiveLoss(LossConfig())
    assert loss.logit_scale == pytest.approx(1 / 0.07)
    logits = loss.logit_scale * a @ b.T
    labels = torch.arange(6)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert float(loss(a, b).detach()) == pytest.approx(float(expected), rel=1e-5)


def test_logit_scale_is_learnable_and_clamped_at_100() -> None:
    loss = ContrastiveLoss(LossConfig())
    assert loss.log_logit_scale.requires_grad
    with torch.no_grad():
        loss.log_logit_scale.fill_(math.log(500.0))
    loss.clamp_()
    assert loss.logit_scale == pytest.approx(100.0)
    frozen = ContrastiveLoss(LossConfig(learn_logit_scale=False))
    assert not frozen.log_logit_scale.requires_grad


def test_siglip_starts_from_the_paper_values_and_falls_with_alignment() -> None:
    loss = ContrastiveLoss(LossConfig(kind="siglip"))
    assert loss.logit_scale == pytest.approx(10.0) and float(loss.logit_bias.detach()) == pytest.approx(-10.0)
    torch.manual_seed(0)
    a = F.normalize(torch.randn(6, 8), dim=-1)
    assert float(loss(a, a).detach()) < float(loss(a, F.normalize(torch.randn(6, 8), dim=-1)).detach())


@pytest.mark.parametrize(("config", "message"), [
    (LossConfig(init_logit_scale=200.0), r"`loss.init_logit_scale`: expected a value in \(0, 100.0\], got 200.0"),
    (LossConfig(init_logit_scale=-1.0), r"`loss.init_logit_scale`: expected a value in \(0, 100.0\], got -1.0"),
])
def test_bad_loss_settings(config: LossConfig, message: str) -> None:
    with pytest.raises(InputError, match=message):
        ContrastiveLoss(config)
