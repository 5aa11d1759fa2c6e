"""Backbones: length-bucketed text forwards equal one padded forward; module inputs drop exactly the padding."""
from __future__ import annotations

import pytest
import torch

from tara_core.backbones import delta_weights, module_inputs
from tara_core.zoo import open_zoo
from zoo_fixture import build_tiny_zoo, sentences


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return open_zoo(build_tiny_zoo(tmp_path_factory.mktemp("zoo"))).backbone


def _mixed_lengths() -> list[str]:
    short, long = sentences(1, 7), sentences(2, 6)
    return [s if i % 2 else " ".join([s] * 3) for i, s in enumerate(short + long)]


def _with_buckets(encoder, rows: int):
    saved = encoder.bucket_rows
    encoder.bucket_rows = rows
    return saved


def test_bucketed_features_equal_one_padded_forward(encoder):
    batch = encoder.preprocess(_mixed_lengths())
    assert batch["attention_mask"].sum(1).unique().numel() > 3
    saved = _with_buckets(encoder, 10_000)
    try:
        one = encoder.features(batch)
        one_tokens = encoder.token_count(batch)
        encoder.bucket_rows = 3
        bucketed = encoder.features(batch)
        bucketed_tokens = encoder.token_count(batch)
    finally:
        encoder.bucket_rows = saved
    torch.testing.assert_close(bucketed, one, atol=1e-5, rtol=1e-5)
    assert one_tokens == batch["input_ids"].numel()
    assert batch["attention_mask"].sum() <= bucketed_tokens < one_tokens


def test_bucketed_gradients_equal_one_padded_forward(encoder):
    batch = encoder.preprocess(_mixed_lengths())
    module = next(iter(encoder.adapted_modules()))
    w0 = encoder.model.get_submodule(module).weight

    def grad(rows: int) -> torch.Tensor:
        delta = (0.01 * torch.ones_like(w0)).requires_grad_(True)
        saved = _with_buckets(encoder, rows)
        try:
            encoder.features(batch, delta_weights(encoder.model, {module: delta})).square().sum().backward()
        finally:
            encoder.bucket_rows = saved
        return delta.grad

    torch.testing.assert_close(grad(2), grad(10_000), atol=1e-4, rtol=1e-4)


def test_module_inputs_keep_every_real_token_once(encoder):
    texts = _mixed_lengths()
    modules = list(encoder.adapted_modules())[:2]
    mask = encoder.preprocess(texts)["attention_mask"]
    grams = {}
    for rows in (10_000, 3):
        saved = _with_buckets(encoder, rows)
        try:
            (x,) = list(module_inputs(encoder, texts, modules, batch_size=len(texts)))
        finally:
            encoder.bucket_rows = saved
        assert all(v.shape[0] == int(mask.sum()) for v in x.values())
        grams[rows] = {m: v.T @ v for m, v in x.items()}
    for m in modules:
        torch.testing.assert_close(grams[3][m], grams[10_000][m], atol=1e-3, rtol=1e-4)


def test_base_weights_are_read_from_the_snapshot_while_another_forward_has_them_swapped(encoder):
    """A second session building its overrides while the first session's functional_call holds its merge in
    the shared module (the dashboard's concurrent-session crash: 'weight is not an nn.Parameter')."""
    import threading

    name = next(n for n in encoder.adapted_modules() if n.endswith("attention.self.query"))
    w0 = encoder.model.get_parameter(f"{name}.weight").detach().clone()
    inside, release = threading.Event(), threading.Event()
    module = encoder.model.get_submodule(name)

    def hold(mod, args):
        inside.set()
        release.wait(30)

    handle = module.register_forward_pre_hook(hold)
    batch = encoder.preprocess(sentences(5, 2))
    first = threading.Thread(target=encoder.features,
                             args=(batch, delta_weights(encoder.model, {name: torch.ones_like(w0)})))
    first.start()
    try:
        assert inside.wait(30)  # the first forward runs with its override swapped into the module
        assert not isinstance(getattr(module, "weight"), torch.nn.Parameter)
        second = delta_weights(encoder.model, {name: torch.zeros_like(w0)})  # must not read the live module
        torch.testing.assert_close(second[f"{name}.weight"], w0)
    finally:
        release.set()
        first.join(30)
        handle.remove()
