"""Precision: fp32 is untouched by the bf16 switch being off; bf16 autocast stays close to fp32."""
from __future__ import annotations

import pytest
import torch

from tara_core.evaluate import predict_logits
from tara_core.precision import autocast, bf16_is_native
from tara_core.run import run_method
from tara_core.zoo import open_zoo
from zoo_fixture import build_tiny_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return open_zoo(build_tiny_zoo(tmp_path_factory.mktemp("zoo")))


def test_bf16_is_native_answers_for_cpu():
    assert isinstance(bf16_is_native("cpu"), bool)


def test_autocast_off_is_exact_fp32():
    x, w = torch.randn(8, 16), torch.randn(16, 4)
    with autocast("cpu", False):
        y = x @ w
    assert y.dtype == torch.float32
    assert torch.equal(y, x @ w)
    with autocast("cpu", True):
        assert (x @ w).dtype == torch.bfloat16


def test_bf16_logits_are_close_to_fp32(zoo):
    inputs = zoo.data[0].test_inputs
    fp32 = predict_logits(zoo, 0, inputs)
    bf16 = predict_logits(zoo, 0, inputs, bf16=True)
    assert bf16.dtype == torch.float32
    scale = zoo.heads[0].logit_scale
    assert (bf16 - fp32).abs().max() < 0.05 * scale


def test_bf16_optimization_tracks_fp32(zoo):
    runs = {}
    for bf16 in (False, True):
        _, record = run_method(zoo, "tara-b", {"steps": 3, "batch_size": 4, "bf16": bf16})
        runs[bf16] = torch.cat([v.flatten() for v in record.phi.values()])
    step32, step16 = runs[False] - 0.4, runs[True] - 0.4
    assert step32.abs().max() > 1e-3  # three AdamW steps moved φ
    # Adam's steps are sign-like: coordinates with a near-zero gradient may go either way in bf16, the rest
    # move the same way by about the same amount
    same_direction = (torch.sign(step32) == torch.sign(step16)).float().mean()
    assert same_direction > 0.9
    assert (step16 - step32).abs().median() < 0.1 * step32.abs().median()
