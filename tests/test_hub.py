"""Hub ids resolve through the local Hugging Face cache (nothing is downloaded); exports name the portable id
and load with PeftModel and AutoPeftModel; recipes re-run bit for bit; the package installs and runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hub_cache import add_to_cache
from tara_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hub(families, tmp_path_factory):
    """families['bert'] published in a local cache as tara-test/tiny-bert and tara-test/adapter-{0,1,2}, and the
    SEQ_CLS llama family as tara-test/tiny-llama and tara-test/llama-adapter-{0,1}."""
    cache = tmp_path_factory.mktemp("hf-cache")
    fam = families["bert"]
    add_to_cache(cache, "tara-test/tiny-bert", fam.base_dir)
    for i, a in enumerate(fam.adapters):
        add_to_cache(cache, f"tara-test/adapter-{i}", a)
    add_to_cache(cache, "tara-test/tiny-llama", families["llama"].base_dir)
    for i, a in enumerate(families["llama"].adapters):
        add_to_cache(cache, f"tara-test/llama-adapter-{i}", a)
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    mp.setattr(c, "HF_HUB_CACHE", str(cache))
    yield fam
    mp.undo()


def test_ids_resolve_from_the_cache_and_unknown_ids_are_named(hub, tmp_path, capsys):
    from tara_core.hub import HubError, resolve

    src = resolve("tara-test/tiny-bert")
    assert src.hub_id == "tara-test/tiny-bert" and (src.path / "config.json").is_file() and src.revision
    with pytest.raises(HubError, match="tara-test/missing.*not in the local Hugging Face cache"):
        resolve("tara-test/missing")
    code = main(["merge", "--base", "tara-test/missing", "--adapters", "tara-test/adapter-0", "tara-test/adapter-1",
                 "--method", "ta", "--out", str(tmp_path / "m")])
    assert code == 2 and "tara-test/missing" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_merge_by_id_exports_a_portable_adapter(hub, tmp_path):
    from peft import PeftModel

    out = tmp_path / "m"
    assert main(["merge", "--base", "tara-test/tiny-bert", "--adapters", "tara-test/adapter-0", "tara-test/adapter-1",
                 "--method", "ta", "--out", str(out)]) == 0
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tara-test/tiny-bert"
    manifest = json.loads((out / "merge.json").read_text())
    assert manifest["base"]["hub_id"] == "tara-test/tiny-bert" and manifest["base"]["revision"]
    assert [a["hub_id"] for a in manifest["adapters"]] == ["tara-test/adapter-0", "tara-test/adapter-1"]
    assert all("adapter_config.json" in a["files"] for a in manifest["adapters"])
    model = PeftModel.from_pretrained(type(hub.model).from_pretrained(str(hub.base_dir)), str(out))
    assert model.peft_config["default"].base_model_name_or_path == "tara-test/tiny-bert"


@pytest.mark.parametrize("method", ["ta", "ties"])
def test_classifier_merge_loads_with_auto_peft_by_id(hub, families, tmp_path, method):
    """SEQ_CLS adapters merged by id: AutoPeftModelForSequenceClassification finds the base by its id in the
    cache and gives exactly PeftModel's logits (the head policy's head included)."""
    from peft import AutoPeftModelForSequenceClassification, PeftModel

    out = tmp_path / "m"
    assert main(["merge", "--base", "tara-test/tiny-llama", "--adapters", "tara-test/llama-adapter-0",
                 "tara-test/llama-adapter-1", "--method", method, "--out", str(out)]) == 0
    auto = AutoPeftModelForSequenceClassification.from_pretrained(str(out)).eval()
    base = type(families["llama"].model).from_pretrained(str(families["llama"].base_dir))
    plain = PeftModel.from_pretrained(base, str(out)).eval()
    x = torch.randint(1, 60, (2, 7))
    with torch.no_grad():
        torch.testing.assert_close(auto(input_ids=x).logits, plain(input_ids=x).logits)


def test_a_changed_config_changes_the_record(hub, families, tmp_path):
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(families["bert"].adapters[0], a)
    shutil.copytree(families["bert"].adapters[1], b)
    main(["merge", "--adapters", str(a), str(b), "--method", "ta", "--out", str(tmp_path / "m1")])
    cfg = json.loads((a / "adapter_config.json").read_text())
    cfg["lora_alpha"] = cfg["lora_alpha"] * 2
    (a / "adapter_config.json").write_text(json.dumps(cfg))
    main(["merge", "--adapters", str(a), str(b), "--method", "ta", "--out", str(tmp_path / "m2")])
    m1, m2 = (json.loads((tmp_path / m / "merge.json").read_text()) for m in ("m1", "m2"))
    assert m1["adapters"][0]["sha256"] == m2["adapters"][0]["sha256"]  # same weights...
    assert m1["adapters"][0]["files"]["adapter_config.json"] != m2["adapters"][0]["files"]["adapter_config.json"]


def test_adapters_of_different_bases_are_refused(families, tmp_path, capsys):
    import shutil

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(families["bert"].adapters[0], a)
    shutil.copytree(families["bert"].adapters[1], b)
    for folder, name in ((a, "gpt2"), (b, "meta-llama/Meta-Llama-3-8B")):
        cfg = json.loads((folder / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = name
        (folder / "adapter_config.json").write_text(json.dumps(cfg))
    assert main(["merge", "--adapters", str(a), str(b), "--method", "ta", "--out", str(tmp_path / "m")]) == 2
    assert "different base models" in capsys.readouterr().err


@pytest.mark.parametrize("method, params", [("ta", {}), ("dare-ties", {"density": 0.6}), ("tara-b", {"steps": 3})])
def test_recipe_round_trips_bit_for_bit(families, tmp_path, method, params):
    import yaml

    from zoo_fixture import build_tiny_zoo

    if method.startswith("tara"):
        source = {"zoo": str(build_tiny_zoo(tmp_path / "zoos"))}
    else:
        source = {"adapters": [str(p) for p in families["bert"].adapters]}
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"method": method, **source, "parameters": params, "seed": 3}))
    assert main(["merge", str(recipe), "--out", str(tmp_path / "first")]) == 0
    assert main(["merge", "--from", str(tmp_path / "first" / "merge.json"), "--out", str(tmp_path / "again")]) == 0
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    first = json.loads((tmp_path / "first" / "merge.json").read_text())
    assert first["recipe"]["method"] == method and first["recipe"]["seed"] == 3
    assert first["run"]["tara_studio"] and first["run"]["command"]


def test_bad_recipes_are_one_line(tmp_path, capsys):
    bad = tmp_path / "r.yaml"
    for text, message in (("method: magic\nadapters: [x]", "unknown method"), ("[1, 2]", "a recipe is a mapping"),
                          ("method: ta\n", "give a zoo, or adapters"), ("method: ta\nzoo: z\nrho: [1, 2]", "rho only")):
        bad.write_text(text)
        assert main(["merge", str(bad), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_help_and_version_without_torch():
    code = ("import sys; from tara_core.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip().endswith("False") and "merge" in out.stdout
    ver = subprocess.run([sys.executable, "-m", "tara_core", "--version"], capture_output=True, text=True, cwd=ROOT)
    from tara_core import __version__

    assert ver.returncode == 0 and __version__ in ver.stdout


def test_wheel_installs_and_runs_from_outside_the_checkout(tmp_path):
    """Build the wheel (no deps) and install it on top of the test environment into its own folder; its
    console script runs from another folder and finds the shipped zoos inside the wheel."""
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            str(ROOT), "-w", str(wheels)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("tara_studio-*.whl")
    target = tmp_path / "site"
    inst = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                           str(wheel)], capture_output=True, text=True)
    assert inst.returncode == 0, inst.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = target / "bin" / "tara-studio"
    run = subprocess.run([str(script), "methods"], capture_output=True, text=True, cwd=elsewhere, env=env)
    assert run.returncode == 0 and "tara-b-pareto" in run.stdout, run.stderr[-2000:]
    merged = subprocess.run([str(script), "merge", "--zoo", "demo-text", "--method", "ta", "--out", "m"],
                            capture_output=True, text=True, cwd=elsewhere, env=env)
    assert merged.returncode == 0, merged.stderr[-2000:]
    manifest = json.loads((elsewhere / "m" / "merge.json").read_text())
    assert str(target) in manifest["recipe"]["zoo"] or manifest["recipe"]["zoo"] == "demo-text"
    assert (elsewhere / "m" / "README.md").is_file()
    assert json.loads((elsewhere / "m" / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        "sentence-transformers/all-MiniLM-L6-v2"
