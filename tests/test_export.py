"""Exported adapters load in PEFT and reproduce base + ΔW; dense results are truncated honestly; writes are atomic."""
from __future__ import annotations

import copy
import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from tara_core import load_adapter_set, merge
from tara_core.base import BaseWeights
from tara_core.export import ExportError, export


def _peft_load(model, folder):
    from peft import PeftModel

    return PeftModel.from_pretrained(copy.deepcopy(model), folder)


def _expected_delta(result, module):
    d = result.dense(module).reshape(result.weight_shapes[module])
    return d.T if result.fan_in_fan_out.get(module) else d


@pytest.mark.parametrize("family", ["bert", "clip", "llama", "gpt2", "open_clip"])
@pytest.mark.parametrize("method", ["ta", "knots-ties", "tsv"])
def test_exported_adapter_reproduces_base_plus_delta(families, tmp_path, family, method):
    fam = families[family]
    aset = load_adapter_set(fam.adapters)
    result = merge(aset, method)
    manifest = export(result, aset, tmp_path / "out", modules_to_save="from:task0")
    assert manifest["export"]["exact"]
    model = _peft_load(fam.model, tmp_path / "out")
    x_gen = torch.Generator().manual_seed(0)
    for module in aset.module_names:
        layer = model.base_model.model.get_submodule(module)
        expected = _expected_delta(result, module)
        assert torch.allclose(layer.get_delta_weight("default"), expected, atol=1e-5), module
        if isinstance(layer.base_layer, torch.nn.Linear):  # layer outputs: PEFT's forward vs W0 + ΔW
            base = layer.base_layer
            x = torch.randn(5, base.in_features, generator=x_gen)
            with torch.no_grad():
                ref = F.linear(x, base.weight + expected, base.bias)
                assert torch.allclose(layer(x), ref, atol=1e-5), module


def test_dense_result_is_truncated_with_measured_error(families, tmp_path):
    fam = families["clip"]
    aset = load_adapter_set(fam.adapters)
    result = merge(aset, "ties")
    manifest = export(result, aset, tmp_path / "trunc")
    err = manifest["export"]["truncation_relative_error"]
    assert not manifest["export"]["exact"] and err["max"] > 0
    model = _peft_load(fam.model, tmp_path / "trunc")
    for module, rel in err["per_module"].items():
        dense = result.dense(module)
        got = model.base_model.model.get_submodule(module).get_delta_weight("default")
        assert float((got - dense).norm() / dense.norm()) == pytest.approx(rel, rel=1e-3, abs=1e-6)
    full = export(result, aset, tmp_path / "full", rank=32)  # min(d_out, d_in): exact
    assert full["export"]["truncation_relative_error"]["max"] < 1e-5


def test_weights_format(families, tmp_path):
    fam = families["bert"]
    aset = load_adapter_set(fam.adapters)
    base = BaseWeights.from_path(fam.base_dir)
    result = merge(aset, "ties")
    export(result, aset, tmp_path / "w", format="weights", base=base)
    weights = load_file(tmp_path / "w" / "merged_weights.safetensors")
    model = copy.deepcopy(fam.model)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not unexpected
    for module in aset.module_names:
        w = model.get_submodule(module).weight
        assert torch.allclose(w, base.weight(module) + result.dense(module), atol=1e-6)


def test_modules_to_save_policies(families, tmp_path):
    fam = families["llama"]
    aset = load_adapter_set(fam.adapters)
    result = merge(aset, "ta")
    m = export(result, aset, tmp_path / "sep")
    assert sorted(p.name for p in (tmp_path / "sep" / "modules_to_save").iterdir()) == ["task0.safetensors",
                                                                                       "task1.safetensors"]
    assert "differ" in m["modules_to_save"]["result"]
    avg = export(result, aset, tmp_path / "avg", modules_to_save="average")
    heads = [a.extra_tensors["score.weight"] for a in aset.adapters]
    model = _peft_load(fam.model, tmp_path / "avg")
    score = model.base_model.model.score.modules_to_save["default"].weight
    assert torch.allclose(score, (heads[0] + heads[1]) / 2) and "averaged" in avg["modules_to_save"]["result"]
    export(result, aset, tmp_path / "drop", modules_to_save="drop")
    assert "score.weight" not in " ".join(load_file(tmp_path / "drop" / "adapter_model.safetensors"))
    with pytest.raises(ExportError, match="unknown modules_to_save policy"):
        export(result, aset, tmp_path / "bad", modules_to_save="median")
    assert not (tmp_path / "bad").exists()


def test_manifest_contents(families, tmp_path):
    aset = load_adapter_set(families["bert"].adapters)
    export(merge(aset, "dare-ties", seed=7), aset, tmp_path / "o")
    m = json.loads((tmp_path / "o" / "merge.json").read_text())
    assert m["method"] == "dare-ties" and m["seed"] == 7 and m["params"]["density"] == 0.5
    assert [a["sha256"] for a in m["adapters"]] == [a.sha256 for a in aset.adapters]
    assert {"torch", "peft", "tara_core"} <= set(m["library_versions"])


def test_existing_folder_is_refused_and_untouched(families, tmp_path):
    aset = load_adapter_set(families["bert"].adapters)
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="already exists"):
        export(merge(aset, "ta"), aset, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_failure_midway_leaves_nothing(families, tmp_path, monkeypatch):
    import tara_core.export as ex

    aset = load_adapter_set(families["bert"].adapters)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ex, "save_file", boom)
    with pytest.raises(ExportError, match="disk full"):  # one line for the user, not a traceback
        export(merge(aset, "ta"), aset, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_classifier_adapters_load_with_the_default_head_policy(families, tmp_path):
    """SEQ_CLS adapters with different heads: the default export loads in PEFT (the heads go to side files,
    and the console explains it) — it used to raise KeyError on load."""
    fam = families["llama"]
    aset = load_adapter_set(fam.adapters)
    m = export(merge(aset, "ta"), aset, tmp_path / "out")
    assert "differ" in m["modules_to_save"]["result"]
    model = _peft_load(fam.model, tmp_path / "out")
    assert model.peft_config["default"].task_type == "SEQ_CLS"


def test_export_is_peft_config_with_card_and_metadata(families, tmp_path):
    from huggingface_hub import ModelCard
    from peft import LoraConfig
    from safetensors import safe_open

    aset = load_adapter_set(families["bert"].adapters)
    export(merge(aset, "ta"), aset, tmp_path / "o", base_id="org/tiny-bert")
    cfg = LoraConfig.from_pretrained(tmp_path / "o")
    assert cfg.base_model_name_or_path == "org/tiny-bert" and cfg.peft_version
    raw = json.loads((tmp_path / "o" / "adapter_config.json").read_text())
    assert "peft_version" in raw and "revision" in raw
    card = ModelCard.load(tmp_path / "o" / "README.md")
    assert card.data.base_model == "org/tiny-bert" and "ta" in card.data.tags and "exact" in card.text
    with safe_open(str(tmp_path / "o" / "adapter_model.safetensors"), "pt") as fh:
        assert fh.metadata() == {"format": "pt"}
    mask = os.umask(0)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "o").iterdir()}
    assert set(modes.values()) == {0o666 & ~mask}, modes  # every file the umask's way, safetensors too
