"""Loading PEFT adapters: scales and shapes against PEFT itself, on every model family, and the bad-input matrix."""
from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tara_core import AdapterError, load_adapter, load_adapter_set
from tara_core.base import BaseWeights

FAMILY_NAMES = ["bert", "clip", "llama", "gpt2", "open_clip"]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_delta_matches_peft_get_delta_weight(families, family):
    """s_i B_i A_i from our loader equals PEFT's own get_delta_weight (rsLoRA, patterns, fan_in_fan_out, MHA)."""
    from peft import PeftModel

    fam = families[family]
    base = BaseWeights.from_path(fam.base_dir)
    for path in fam.adapters:
        adapter = load_adapter(path)
        peft_model = PeftModel.from_pretrained(copy.deepcopy(fam.model), path)
        for module, lm in adapter.modules.items():
            layer = peft_model.base_model.model.get_submodule(module)
            expected = layer.get_delta_weight("default")
            ours = lm.scale * lm.B @ lm.A
            if lm.weight_shape != ours.shape:
                ours = ours.reshape(lm.weight_shape)
            if adapter.fan_in_fan_out:
                ours = ours.T
            assert torch.allclose(ours, expected, atol=1e-6), module
            assert base.shapes_for([module])[module] == tuple(expected.shape)


def test_patterns_rslora_and_union(families):
    aset = load_adapter_set(families["bert"].adapters)
    t0, t1, t2 = aset.adapters
    q = "encoder.layer.0.attention.self.query"
    assert t0.modules[q].scale == pytest.approx(8 / 4)
    assert t1.modules[q].scale == pytest.approx(8 / 8 ** 0.5)  # rsLoRA: α/√r
    assert t2.modules["encoder.layer.0.attention.self.value"].rank == 6  # rank_pattern
    assert t2.modules["encoder.layer.0.attention.self.key"].scale == pytest.approx(10 / 2)  # alpha_pattern
    dense = "encoder.layer.0.attention.output.dense"
    assert dense in aset.module_names and aset.get(1, dense) is None  # union; absent = zero
    assert aset.factors(dense)[1] is None


def test_modules_to_save_are_kept_and_reported(families):
    aset = load_adapter_set(families["llama"].adapters)
    a = aset.adapters[0]
    assert a.modules_to_save and "score.weight" in a.extra_tensors
    assert aset.summary()[0]["modules_to_save"]


def test_legacy_bin_is_loaded_with_weights_only(families, tmp_path):
    src = families["clip"].adapters[0]
    dst = tmp_path / "bin_adapter"
    dst.mkdir()
    shutil.copy(src / "adapter_config.json", dst)
    torch.save(load_file(src / "adapter_model.safetensors"), dst / "adapter_model.bin")
    a, b = load_adapter(src), load_adapter(dst)
    for m in a.modules:
        assert torch.equal(a.modules[m].A, b.modules[m].A)


# ---- bad input: one test per case, each with a clear message --------------------------------------------
def _copy(src, tmp_path, name="bad"):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _edit_config(path, **changes):
    cfg = json.loads((path / "adapter_config.json").read_text())
    cfg.update(changes)
    (path / "adapter_config.json").write_text(json.dumps(cfg))


def _edit_tensors(path, fn):
    f = path / "adapter_model.safetensors"
    tensors = load_file(f)
    fn(tensors)
    save_file(tensors, f)


def test_different_base_shapes(families):
    with pytest.raises(AdapterError, match="different base models"):
        # same module names (q_proj ...) but hidden sizes differ: CLIP's tiny tower vs a resized copy
        load_adapter_set([families["clip"].adapters[0], _resized(families)])


def _resized(families):
    import tempfile
    from pathlib import Path

    from conftest import make_adapter
    from transformers import CLIPVisionConfig, CLIPVisionModel

    cfg = CLIPVisionConfig(hidden_size=40, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                           image_size=16, patch_size=8)
    return make_adapter(CLIPVisionModel(cfg), Path(tempfile.mkdtemp()) / "wide", seed=7, r=4, lora_alpha=4,
                        target_modules=["q_proj"])


def test_nan_values(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    _edit_tensors(bad, lambda t: t[next(iter(t))].view(-1).__setitem__(0, float("nan")))
    with pytest.raises(AdapterError, match="NaN or Inf"):
        load_adapter(bad)


def test_inf_values(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    _edit_tensors(bad, lambda t: t[next(iter(t))].view(-1).__setitem__(0, float("inf")))
    with pytest.raises(AdapterError, match="NaN or Inf"):
        load_adapter(bad)


def test_dora_is_refused(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    _edit_config(bad, use_dora=True)
    with pytest.raises(AdapterError, match="DoRA"):
        load_adapter(bad)


def test_dora_magnitude_keys_are_refused(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    _edit_tensors(bad, lambda t: t.__setitem__(
        "base_model.model.encoder.layer.0.attention.self.query.lora_magnitude_vector", torch.ones(32)))
    with pytest.raises(AdapterError, match="DoRA magnitude"):
        load_adapter(bad)


def test_non_lora_peft_type(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    _edit_config(bad, peft_type="IA3")
    with pytest.raises(AdapterError, match="not LoRA"):
        load_adapter(bad)


def test_keys_matching_no_base_module(families):
    base = BaseWeights.from_path(families["clip"].base_dir)
    bert_adapter = families["bert"].adapters[0]
    mods = list(load_adapter(bert_adapter).modules)
    with pytest.raises(AdapterError, match="none of its .* modules exist in the base"):
        load_adapter_set([bert_adapter], base_shapes=base.shapes_for(mods) or {})


def test_shape_differs_from_base(families):
    base = BaseWeights.from_path(families["clip"].base_dir)
    wide = _resized(families)
    mods = list(load_adapter(wide).modules)
    with pytest.raises(AdapterError, match="base weight is"):
        load_adapter_set([wide], base_shapes=base.shapes_for(mods))


def test_truncated_file(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    f = bad / "adapter_model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(AdapterError, match="corrupt or truncated"):
        load_adapter(bad)


def test_garbage_file(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    (bad / "adapter_model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(AdapterError, match="corrupt or truncated"):
        load_adapter(bad)


def test_bad_json_config(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    (bad / "adapter_config.json").write_text("{not json")
    with pytest.raises(AdapterError, match="not valid JSON"):
        load_adapter(bad)


def test_missing_files(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        load_adapter(tmp_path / "empty")
    with pytest.raises(AdapterError, match="not a directory"):
        load_adapter(tmp_path / "nope")


def test_pickle_with_code_is_refused(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    (bad / "adapter_model.safetensors").unlink()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, bad / "adapter_model.bin")
    with pytest.raises(AdapterError, match="weights_only=True") as exc:
        load_adapter(bad)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 300  # short and literal, one line


def test_expanded_tensor_in_a_pickle_is_refused_before_it_is_touched(families, tmp_path):
    """2 KB on disk declaring 16384 × 16384 floats (stride 0): refused, nothing materialized."""
    import resource

    bad = _copy(families["bert"].adapters[0], tmp_path)
    (bad / "adapter_model.safetensors").unlink()
    module = "base_model.model.encoder.layer.0.attention.self.query"
    torch.save({f"{module}.lora_A.weight": torch.zeros(1).expand(4, 16384),
                f"{module}.lora_B.weight": torch.zeros(1).expand(16384, 4),
                "base_model.model.classifier.weight": torch.zeros(1).expand(16384, 16384)},
               bad / "adapter_model.bin")
    assert (bad / "adapter_model.bin").stat().st_size < 10_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(AdapterError, match="expanded or overlapping"):
        load_adapter(bad)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: no 1 GB allocation


def _sparse_safetensors_bomb(folder: Path, extra_key: str, shape: tuple[int, ...]) -> None:
    """Rewrite the adapter's safetensors with one more F32 tensor of ``shape`` whose data is a hole: a few KB
    on disk, gigabytes declared (safetensors checks offsets, not what is stored)."""
    import struct

    from safetensors.torch import load_file

    st = folder / "adapter_model.safetensors"
    tensors = load_file(st)
    header, blobs, offset = {}, [], 0
    for key, t in tensors.items():
        data = t.float().contiguous().numpy().tobytes()
        header[key] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    huge = math.prod(shape) * 4
    header[extra_key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + huge]}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(st, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))
        fh.truncate(8 + len(raw) + offset + huge)  # a hole, not written


def test_sparse_safetensors_declaring_gigabytes_is_refused_before_reading(families, tmp_path):
    """8 KB on disk declaring a 16384 × 16384 head: refused from the header (against the base, or as a
    sparse file without one), nothing read."""
    import resource

    fam = families["bert"]
    bad = _copy(fam.adapters[0], tmp_path)
    _sparse_safetensors_bomb(bad, "base_model.model.classifier.weight", (16384, 16384))
    st = bad / "adapter_model.safetensors"
    assert st.stat().st_blocks * 512 < 100_000 and st.stat().st_size > 2**30
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(AdapterError, match="larger than any weight of the base"):
        load_adapter_set([bad], base=BaseWeights.from_path(fam.base_dir))
    with pytest.raises(AdapterError, match="sparse file"):
        load_adapter(bad)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KB: no 1 GB allocation


def test_oversized_or_wrong_rank_lora_factor_is_refused_from_the_header(families, tmp_path):
    fam = families["bert"]
    bad = _copy(fam.adapters[0], tmp_path)
    r = json.loads((bad / "adapter_config.json").read_text())["r"]
    _sparse_safetensors_bomb(bad, "base_model.model.encoder.layer.0.output.dense.lora_A.weight", (r, 10**8))
    with pytest.raises(AdapterError, match="larger than any weight of the base"):
        load_adapter_set([bad], base=BaseWeights.from_path(fam.base_dir))
    bad2 = _copy(fam.adapters[1], tmp_path, "bad2")
    _sparse_safetensors_bomb(bad2, "base_model.model.encoder.layer.0.output.dense.lora_B.weight", (64, r + 3))
    with pytest.raises(AdapterError, match="but the config says"):
        load_adapter(bad2)


@pytest.mark.parametrize("edit, message", [
    ({"lora_alpha": float("nan")}, "lora_alpha must be a positive finite number"),
    ({"lora_alpha": float("inf")}, "lora_alpha must be a positive finite number"),
    ({"r": 0}, "r must be a positive integer"),
    ({"r": 2.5}, "r must be a positive integer"),
    ({"r": True}, "r must be a positive integer"),
    ({"alpha_pattern": {"value": float("nan")}}, "alpha_pattern"),
    ({"rank_pattern": {"value": -1}}, "rank_pattern"),
])
def test_config_values_are_validated(families, tmp_path, edit, message):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    _edit_config(bad, **edit)  # JSON accepts NaN and Infinity
    with pytest.raises(AdapterError, match=message):
        load_adapter(bad)


def test_float64_beyond_float32_is_refused(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    _edit_tensors(bad, lambda t: t.update({k: (t[k].double() * 1e300) for k in t if "lora_A" in k}))
    with pytest.raises(AdapterError, match="too large for float32"):
        load_adapter(bad)


def test_duplicate_adapters(families, tmp_path):
    src = families["bert"].adapters[0]
    dup = _copy(src, tmp_path, "dup")
    with pytest.raises(AdapterError, match="duplicate adapters"):
        load_adapter_set([src, dup])


def test_rank_mismatch_with_config(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    _edit_config(bad, r=5)
    with pytest.raises(AdapterError, match="config says r=5"):
        load_adapter(bad)


def test_missing_b_factor(families, tmp_path):
    bad = _copy(families["bert"].adapters[0], tmp_path)
    _edit_tensors(bad, lambda t: t.pop(next(k for k in t if "lora_B" in k)))
    with pytest.raises(AdapterError, match="has no lora_B"):
        load_adapter(bad)


def test_empty_adapter_list():
    with pytest.raises(AdapterError, match="at least one adapter"):
        load_adapter_set([])


def test_absent_config_fields_take_peft_defaults(families, tmp_path):
    """A config without lora_alpha means PEFT's default (8), not r: the scale is PEFT's by construction."""
    from peft import PeftModel

    fam = families["bert"]
    folder = _copy(fam.adapters[1], tmp_path)  # r = 8 with rsLoRA in the fixture; drop alpha and rsLoRA
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg.pop("lora_alpha")
    cfg["use_rslora"] = False
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    adapter = load_adapter(folder)
    peft_model = PeftModel.from_pretrained(copy.deepcopy(fam.model), folder)
    for module, lm in adapter.modules.items():
        expected = peft_model.base_model.model.get_submodule(module).get_delta_weight("default")
        assert torch.allclose(lm.scale * lm.B @ lm.A, expected, atol=1e-6), module
