"""Adapter module names resolved onto a base's modules by name and shape, never by a silent guess."""
from __future__ import annotations

import pytest

from tara_core.keymap import KeymapError, resolve_module_names

CLIP = {  # a CLIP with a 512-wide text tower and a 768-wide vision tower (ViT-B/32)
    "text_model.encoder.layers.0.self_attn.q_proj.weight": (512, 512),
    "text_model.encoder.layers.0.self_attn.q_proj.bias": (512,),
    "vision_model.encoder.layers.0.self_attn.q_proj.weight": (768, 768),
    "visual.transformer.resblocks.0.attn.in_proj_weight": (96, 32),
    "visual.transformer.resblocks.0.attn.out_proj.weight": (32, 32),
    "transformer.resblocks.0.attn.in_proj_weight": (96, 32),
    "transformer.resblocks.0.attn.out_proj.weight": (32, 32),
    "model.layers.0.self_attn.q_proj.weight": (64, 64),
    "h.0.attn.c_attn.weight": (32, 96),
}


def test_exact_names_are_kept():
    assert resolve_module_names({"model.layers.0.self_attn.q_proj": (64, 64)}, CLIP) == {
        "model.layers.0.self_attn.q_proj": "model.layers.0.self_attn.q_proj"}


def test_shape_picks_the_tower_when_the_name_fits_both():
    got = resolve_module_names({"encoder.layers.0.self_attn.q_proj": (768, 768)}, CLIP)
    assert got == {"encoder.layers.0.self_attn.q_proj": "vision_model.encoder.layers.0.self_attn.q_proj"}


def test_same_shapes_are_ambiguous_unless_a_prefix_is_given():
    modules = {"transformer.resblocks.0.attn": (96, 32), "transformer.resblocks.0.attn.base_layer.out_proj": (32, 32)}
    # exact match with the text tower's names: taken as is without a prefix ...
    assert resolve_module_names(modules, CLIP)["transformer.resblocks.0.attn"] == "transformer.resblocks.0.attn"
    # ... and moved onto the image tower with one, keeping PEFT's ".base_layer." wrapping
    got = resolve_module_names(modules, CLIP, prefix="visual.")
    assert got == {"transformer.resblocks.0.attn": "visual.transformer.resblocks.0.attn",
                   "transformer.resblocks.0.attn.base_layer.out_proj": "visual.transformer.resblocks.0.attn.base_layer.out_proj"}
    two_towers = {k: v for k, v in CLIP.items() if "q_proj" in k} | {
        "text_model.encoder.layers.0.self_attn.q_proj.weight": (768, 768)}
    with pytest.raises(KeymapError, match="several base modules"):
        resolve_module_names({"encoder.layers.0.self_attn.q_proj": (768, 768)}, two_towers)


def test_adapters_of_a_larger_model_lose_their_extra_prefix():
    got = resolve_module_names({"base.model.layers.0.self_attn.q_proj": (64, 64)}, CLIP)
    assert got == {"base.model.layers.0.self_attn.q_proj": "model.layers.0.self_attn.q_proj"}


def test_errors_name_the_problem():
    with pytest.raises(KeymapError, match="none of the adapters' 1 modules exist"):
        resolve_module_names({"decoder.block.0.q": (8, 8)}, CLIP)
    with pytest.raises(KeymapError, match=r"shape \(700, 700\)"):
        resolve_module_names({"encoder.layers.0.self_attn.q_proj": (700, 700),
                              "model.layers.0.self_attn.q_proj": (64, 64)}, CLIP)


def test_fan_in_fan_out_compares_transposed_shapes():
    assert resolve_module_names({"h.0.attn.c_attn": (96, 32)}, CLIP, fan_in_fan_out={"h.0.attn.c_attn": True}) == {
        "h.0.attn.c_attn": "h.0.attn.c_attn"}
