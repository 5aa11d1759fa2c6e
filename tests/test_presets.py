"""The paper's real setups end to end on tiny random models in the real layouts (TARA.md §6.3, §6.5, §9):
``zoo import`` → load (KnOTS ``.bin`` keys renamed onto the right tower) → every merge method → TARA-B
3 steps → export → PEFT reload gives the same outputs as base + ΔW."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import yaml

import presets
from tara_core.adapters import AdapterError, load_adapter_set
from tara_core.base import BaseWeights
from tara_core.cli import main
from tara_core.evaluate import evaluate, merged_overrides
from tara_core.export import export
from tara_core.methods.registry import METHODS
from tara_core.run import run_method
from tara_core.zoo import ZooError, open_zoo

LEARNED = {"steps": 3, "batch_size": 4}


def _write_spec(path, spec: dict):
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_clip")
    clip = presets.hf_clip_folder(root / "clip")
    adapters = [presets.knots_adapter(clip, root / f"knots_{t}", seed=10 + i, r=4 + 2 * i)
                for i, t in enumerate(("shapes", "digits"))]
    presets.image_folder(root / "data" / "shapes", ["circle", "square", "star"], {"train": 10, "test": 4}, seed=1)
    presets.mnist_raw(root / "data" / "mnist", n_train=20, n_test=8, seed=2)
    spec = {"name": "tiny-hf-clip", "kind": "hf-clip", "base": "clip", "tasks": [
        {"name": "shapes", "adapter": str(adapters[0]), "templates": ["a photo of a {}.", "a drawing of a {}."],
         "data": {"layout": "imagefolder", "root": "data/shapes"}},
        {"name": "digits", "adapter": str(adapters[1]), "classes": [str(d) for d in range(10)],
         "templates": ["a photo of the number {}."],
         "data": {"layout": "torchvision", "dataset": "MNIST", "root": "data/mnist"}},
    ]}
    spec_path = _write_spec(root / "spec.yaml", spec)
    assert main(["zoo", "import", str(spec_path), "--out", str(root / "zoos")]) == 0
    return root, clip, open_zoo(root / "zoos" / "tiny-hf-clip")


@pytest.fixture(scope="module")
def open_clip_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("open_clip")
    model = presets.open_clip_folder(root / "oc")
    adapters = [presets.open_clip_adapter(model, root / f"oc_{i}", seed=20 + i) for i in range(2)]
    for i in range(2):
        presets.image_folder(root / "data" / f"t{i}", ["a", "b"], {"train": 10, "val": 3, "test": 4}, seed=3 + i)
    spec = {"name": "tiny-open-clip", "kind": "open-clip", "base": str(root / "oc"), "logit_scale": "clip",
            "tasks": [{"name": f"t{i}", "adapter": str(adapters[i]),
                       "data": {"layout": "imagefolder", "root": str(root / "data" / f"t{i}"), "val_split": "val"}}
                      for i in range(2)]}
    from tara_core.recipes.local import ImportSpec, import_zoo

    zoo_dir = import_zoo(ImportSpec.model_validate(spec), root / "zoos" / "tiny-open-clip", log=lambda *_: None)
    return root, model, open_zoo(zoo_dir)


@pytest.fixture(scope="module")
def seqcls_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("seqcls")
    model = presets.llama_folder(root / "llama")
    adapters = [presets.seqcls_adapter(model, root / f"nli_{i}", seed=30 + i) for i in range(2)]
    tasks = []
    for i, classes in enumerate((["entailment", "neutral", "contradiction"], ["entailment", "not_entailment"])):
        files = {s: str(presets.nli_table(root / f"t{i}_{s}.jsonl", n, 40 + i, len(classes)))
                 for s, n in (("train", 20), ("test", 8))}
        tasks.append({"name": f"nli{i}", "adapter": str(adapters[i]), "classes": classes,
                      "data": {"layout": "table", "files": files,
                               "template": "premise: {premise} hypothesis: {hypothesis}"}})
    spec = {"name": "tiny-nli", "kind": "hf-seqcls", "base": str(root / "llama"), "max_length": 32, "tasks": tasks}
    spec_path = _write_spec(root / "spec.yaml", spec)
    assert main(["zoo", "import", str(spec_path), "--out", str(root / "zoos")]) == 0
    return root, model, open_zoo(root / "zoos" / "tiny-nli")


# ---- import and loading ----------------------------------------------------------------------------------
def test_knots_keys_land_on_the_vision_tower(hf_clip):
    _, clip, zoo = hf_clip
    names = zoo.adapters.module_names
    assert names and all(m.startswith("vision_model.encoder.layers.") for m in names)
    # the adapter's ΔW is the one PEFT's own wrapping of the vision transformer gives
    from peft import PeftModel

    adapter_dir = zoo.folder / zoo.manifest.tasks[0].adapter
    peft_model = PeftModel.from_pretrained(copy.deepcopy(clip.vision_model), adapter_dir)
    lm = zoo.adapters.get(0, "vision_model.encoder.layers.1.self_attn.v_proj")
    got = lm.scale * lm.B @ lm.A
    want = peft_model.base_model.model.encoder.layers[1].self_attn.v_proj.get_delta_weight("default")
    assert torch.allclose(got, want, atol=1e-6)


def test_same_width_towers_make_unprefixed_names_ambiguous(hf_clip):
    root, _, zoo = hf_clip
    base = BaseWeights.from_path(root / "clip")
    paths = [zoo.folder / t.adapter for t in zoo.manifest.tasks]
    with pytest.raises(AdapterError, match="several base modules.*text_model|several base modules.*vision_model"):
        load_adapter_set(paths, base=base)
    with pytest.raises(AdapterError, match="several base weights"):
        base.key_for("encoder.layers.0.self_attn.q_proj")
    aset = load_adapter_set(paths, base=base, module_prefix="vision_model.")
    assert aset.module_names == zoo.adapters.module_names


def test_splits_follow_the_reference_protocol(hf_clip, open_clip_zoo, seqcls_zoo):
    _, _, zoo = hf_clip
    shapes, digits = zoo.manifest.tasks
    assert (shapes.splits.val, shapes.splits.test) == (6, 12)  # 20 % of 30 train images; the test split
    assert (digits.splits.val, digits.splits.test) == (4, 8)  # MNIST: 20 % of 20; t10k
    assert zoo.data[0].val[0].mode == "RGB" and zoo.data[1].val[0].mode == "RGB"  # MNIST is grayscale
    assert len(zoo.heads[0].weight) == 3 and len(zoo.heads[1].weight) == 10
    _, _, oc = open_clip_zoo
    assert [t.splits.val for t in oc.manifest.tasks] == [6, 6]  # the val split, whole
    _, _, nli = seqcls_zoo
    assert [t.splits.test for t in nli.manifest.tasks] == [8, 8]  # the -1 row is left out
    for z in (zoo, oc, nli):
        for t in z.manifest.tasks:
            assert 0 <= t.individual_accuracy <= 100 and math.isfinite(t.anchor_entropy)


def test_logit_scale_is_an_explicit_choice(hf_clip, open_clip_zoo):
    assert hf_clip[2].manifest.logit_scale == 1.0  # default: unscaled, as the reference anchors imply
    _, model, oc = open_clip_zoo
    assert oc.manifest.logit_scale == pytest.approx(float(model.logit_scale.exp()))
    assert oc.heads[0].logit_scale == pytest.approx(1 / 0.07, rel=1e-4)


def test_seqcls_heads_reproduce_peft_sequence_classifier(seqcls_zoo):
    from peft import PeftModel

    root, model, zoo = seqcls_zoo
    texts = zoo.data[1].test_inputs[:5]
    for i in range(2):
        alone = run_method(zoo, "cat", None, None, [i])[0]
        batch = zoo.backbone.preprocess(texts)
        ours = zoo.heads[i](zoo.backbone.features(batch, merged_overrides(zoo, alone)))
        peft_model = PeftModel.from_pretrained(copy.deepcopy(model), zoo.folder / zoo.manifest.tasks[i].adapter).eval()
        with torch.no_grad():
            theirs = peft_model(**batch).logits
        assert torch.allclose(ours, theirs, atol=1e-5)
    # the 2-class task's head still has 3 rows: all enter the entropy, predictions never pick row 3
    head = zoo.heads[1]
    assert head.weight.shape[0] == 3 and head.num_classes == 2
    logits = torch.tensor([[0.0, 1.0, 5.0], [3.0, 1.0, 9.0]])
    assert head.predict(logits).tolist() == [1, 0]


# ---- every method, TARA-B, export, PEFT reload -----------------------------------------------------------
def _reference_features(kind, model, export_dir, batch):
    """Features of the base with the exported adapter loaded by PEFT (its own forward)."""
    from peft import PeftModel

    with torch.no_grad():
        if kind == "hf-clip":
            peft_model = PeftModel.from_pretrained(copy.deepcopy(model), export_dir).eval()
            out = peft_model.base_model.model.get_image_features(pixel_values=batch["pixel_values"])
            return out if torch.is_tensor(out) else out.pooler_output
        if kind == "open-clip":
            # PEFT 0.21.2's MultiheadAttention.merge adds the out_proj delta twice (it adds get_delta_weight to the
            # weight, then calls out_proj.merge, which adds it again), and its forward merges: so take the deltas
            # PEFT reads from the exported files and add them to a copy of the base by hand
            peft_model = PeftModel.from_pretrained(copy.deepcopy(model), export_dir).eval()
            dense = copy.deepcopy(model)
            for name, layer in peft_model.base_model.model.named_modules():
                if hasattr(layer, "get_delta_weight") and "default" in getattr(layer, "lora_A", {}):
                    target = dense.get_submodule(name.replace(".base_layer", ""))
                    weight = target.in_proj_weight if isinstance(target, torch.nn.MultiheadAttention) else target.weight
                    weight += layer.get_delta_weight("default")
            return dense.encode_image(batch["pixel_values"])
        peft_model = PeftModel.from_pretrained(copy.deepcopy(model), export_dir).eval()
        hidden = peft_model.base_model.model.model(input_ids=batch["input_ids"],
                                                   attention_mask=batch["attention_mask"]).last_hidden_state
        last = batch["attention_mask"].sum(1) - 1
        return hidden[torch.arange(len(last)), last]


@pytest.mark.parametrize("which", ["hf_clip", "open_clip_zoo", "seqcls_zoo"])
def test_every_method_then_tara_b_export_and_peft_reload(request, tmp_path, which):
    root, model, zoo = request.getfixturevalue(which)
    for name, spec in METHODS.items():
        params = LEARNED if spec.data_driven else None
        result, _ = run_method(zoo, name, params)
        acc = evaluate(zoo, result, limit=4)
        assert all(0.0 <= a <= 100.0 for a in acc.values()), name
    result, record = run_method(zoo, "tara-b", LEARNED, rho=[0.7, 0.3])
    assert record.steps_run == 3 and all(math.isfinite(h["loss"]) for h in record.history)
    manifest = export(result, zoo.adapters, tmp_path / "merged", modules_to_save="from:" + zoo.task_names[0])
    assert manifest["export"]["exact"]
    config = json.loads((tmp_path / "merged" / "adapter_config.json").read_text())
    assert config["target_modules"]  # the resolved full names, not the ambiguous short ones
    inputs = zoo.data[0].test_inputs[:4]
    batch = zoo.backbone.preprocess(inputs)
    with torch.no_grad():
        ours = zoo.backbone.features(batch, merged_overrides(zoo, result))
    theirs = _reference_features(zoo.manifest.kind, model, tmp_path / "merged", batch)
    assert torch.allclose(ours, theirs.float(), atol=1e-5)
    assert not torch.allclose(ours, zoo.backbone.features(batch), atol=1e-4)  # the merge did change the model


def test_diagnostics_run_on_mha_adapters(open_clip_zoo):
    from tara_core.diagnostics import diagnose

    _, _, zoo = open_clip_zoo
    df = diagnose(zoo, what=["erank", "kappa", "xi"], batch_size=4)
    assert df["value"].notna().all() and len(df["quantity"].unique()) >= 3
    assert df["module"].astype(str).str.contains("attn").any()


# ---- bad input --------------------------------------------------------------------------------------------
def test_bad_specs_are_refused_clearly(hf_clip, tmp_path):
    root, _, zoo = hf_clip
    from tara_core.recipes.local import load_spec

    bad = _write_spec(tmp_path / "a.yaml", {"name": "x", "kind": "hf-clip", "base": "b", "tasks": [], "colour": 1})
    with pytest.raises(ZooError, match="invalid zoo spec"):
        load_spec(bad)
    spec = yaml.safe_load((root / "spec.yaml").read_text())
    spec["tasks"][0]["data"]["root"] = str(tmp_path / "nowhere")
    spec["base"] = str(root / "clip")
    spec["tasks"][1]["adapter"] = spec["tasks"][1]["adapter"]
    assert main(["zoo", "import", str(_write_spec(tmp_path / "b.yaml", spec)), "--out", str(tmp_path / "z")]) == 2
    assert not (tmp_path / "z" / "tiny-hf-clip").exists()  # nothing half-written
    spec = yaml.safe_load((root / "spec.yaml").read_text())
    spec["base"] = str(root / "clip")
    spec["tasks"][1]["classes"] = ["0", "1"]  # MNIST labels reach 9
    assert main(["zoo", "import", str(_write_spec(tmp_path / "c.yaml", spec)), "--out", str(tmp_path / "z")]) == 2


def test_seqcls_in_bf16_weights_runs_tara_b(seqcls_zoo, tmp_path):
    """dtype bfloat16 (what 'auto' picks on CUDA) on the CPU: overrides and side paths follow the model's dtype."""
    root, _, zoo = seqcls_zoo
    spec = yaml.safe_load(json.dumps(zoo.manifest.build["spec"]))
    spec.update(name="tiny-nli-bf16", dtype="bfloat16")
    for t, info in zip(spec["tasks"], zoo.manifest.tasks):
        t["individual_accuracy"] = info.individual_accuracy or 50.0
    assert main(["zoo", "import", str(_write_spec(tmp_path / "bf16.yaml", spec)), "--out", str(tmp_path)]) == 0
    bf16 = open_zoo(tmp_path / "tiny-nli-bf16")
    assert next(bf16.backbone.model.parameters()).dtype == torch.bfloat16
    for mode in ("materialized", "side"):
        result, record = run_method(bf16, "tara-b", {**LEARNED, "mode": mode})
        assert all(math.isfinite(h["loss"]) for h in record.history)
    acc = evaluate(bf16, result)
    assert all(0.0 <= a <= 100.0 for a in acc.values())


def test_dashboard_pages_on_an_imported_zoo(hf_clip, monkeypatch):
    """The dashboard on a user's imported zoo (found through TARA_ZOO_PATH) like on the demo zoos."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    root, _, _ = hf_clip
    monkeypatch.setenv("TARA_ZOO_PATH", str(root / "zoos"))
    app = str(Path(__file__).resolve().parents[1] / "app.py")
    for page, state in ((None, {}), ("pages/merge.py", {"method": "knots-ties", "eval_limit": 4}),
                        ("pages/coverage.py", {})):
        at = AppTest.from_file(app, default_timeout=120)
        at.session_state["zoo"] = "tiny-hf-clip"
        for key, value in state.items():
            at.session_state[key] = value
        at.run()
        if page:
            at.switch_page(page)
            at.run()
        assert not at.exception, (page, at.exception)
        if page is None:  # the Adapters page lists the imported zoo's tasks
            assert {"shapes", "digits"} <= set(at.dataframe[0].value.to_string().split())
    assert at.title[0].value == "Subspace coverage"
