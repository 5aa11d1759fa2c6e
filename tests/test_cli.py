"""The CLI: a merge that PEFT loads, ``methods``, and one clear line + exit 2 + nothing written for bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tara_core.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run(argv):
    return main([str(a) for a in argv])


def test_help_everywhere():
    for args in ([], ["merge"], ["methods"]):
        proc = subprocess.run([sys.executable, "-m", "tara_core", *args, "--help"], cwd=ROOT,
                              capture_output=True, text=True)
        assert proc.returncode == 0 and "usage:" in proc.stdout


def test_methods_lists_every_method(tmp_path, capsys):
    assert run(["methods", "--json", tmp_path / "m.json"]) == 0
    listed = {row["method"] for row in json.loads((tmp_path / "m.json").read_text())}
    assert {"ta", "cat", "ties", "dare-linear", "dare-ties", "knots-ta", "knots-ties", "knots-dare", "tsv",
            "iso-c", "iso-cts", "lora-lego"} <= listed


def test_merge_writes_adapter_and_manifest(families, tmp_path):
    fam = families["bert"]
    out = tmp_path / "merged"
    code = run(["merge", "--base", fam.base_dir, "--adapters", *fam.adapters, "--method", "ties",
                "--param", "density=0.3", "--param", "lambda=0.8", "--out", out, "--seed", 1])
    assert code == 0
    manifest = json.loads((out / "merge.json").read_text())
    assert manifest["params"]["density"] == 0.3 and manifest["params"]["lambda"] == 0.8
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()


def test_merge_weights_format(families, tmp_path):
    fam = families["clip"]
    out = tmp_path / "w"
    assert run(["merge", "--base", fam.base_dir, "--adapters", *fam.adapters, "--method", "ta",
                "--format", "weights", "--out", out]) == 0
    assert (out / "merged_weights.safetensors").is_file()


@pytest.mark.parametrize("case", [
    "unknown_method", "unknown_param", "density_out_of_range", "bad_param_syntax", "existing_out",
    "missing_adapter", "wrong_base", "weights_without_base", "nan_adapter",
])
def test_bad_input_one_line_exit_2_nothing_written(families, tmp_path, capsys, case):
    fam = families["bert"]
    out = tmp_path / "out"
    args = ["merge", "--adapters", *fam.adapters, "--method", "ta", "--out", out]
    expect = {
        "unknown_method": "unknown method", "unknown_param": "has no parameter",
        "density_out_of_range": "density", "bad_param_syntax": "key=value", "existing_out": "already exists",
        "missing_adapter": "no such adapter folder", "wrong_base": "modules exist in the base",
        "weights_without_base": "needs the base", "nan_adapter": "NaN or Inf",
    }[case]
    if case == "unknown_method":
        args[args.index("ta")] = "magic"
    elif case == "unknown_param":
        args += ["--param", "temperature=3"]
    elif case == "density_out_of_range":
        args[args.index("ta")] = "ties"
        args += ["--param", "density=2"]
    elif case == "bad_param_syntax":
        args += ["--param", "lambda"]
    elif case == "existing_out":
        out.mkdir()
    elif case == "missing_adapter":
        args[2] = tmp_path / "nowhere"
    elif case == "wrong_base":
        args += ["--base", families["clip"].base_dir]
    elif case == "weights_without_base":
        args += ["--format", "weights"]
    elif case == "nan_adapter":
        import shutil

        from safetensors.torch import load_file, save_file
        bad = tmp_path / "nan"
        shutil.copytree(fam.adapters[0], bad)
        t = load_file(bad / "adapter_model.safetensors")
        next(iter(t.values())).view(-1)[0] = float("nan")
        save_file(t, bad / "adapter_model.safetensors")
        args[2] = bad
    existed = out.exists()
    assert run(args) == 2
    err = capsys.readouterr().err
    assert expect in err and err.strip().startswith("error:") and len(err.strip().splitlines()) <= 3
    assert out.exists() == existed
    if existed:
        assert list(out.iterdir()) == []
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    from zoo_fixture import build_tiny_zoo

    return build_tiny_zoo(tmp_path_factory.mktemp("cli-zoo"))


def test_diagnose_writes_tidy_rows(tiny_zoo, tmp_path):
    js, csv = tmp_path / "d.json", tmp_path / "d.csv"
    assert main(["diagnose", "--zoo", str(tiny_zoo), "--batch-size", "4", "--rho", "0.5,0.3,0.2",
                 "--json", str(js), "--csv", str(csv)]) == 0
    rows = json.loads(js.read_text())
    quantities = {r["quantity"] for r in rows}
    assert quantities == {"erank_per_task_sum", "erank_rank1_stack", "erank_dw_stack", "erank_dx_stack",
                          "erank_merged", "kappa_raw", "kappa_orth", "xi"}
    assert all({"quantity", "layer", "module", "value"} <= set(r) for r in rows)
    assert csv.read_text().splitlines()[0].startswith("quantity,layer,module,value")


def test_pareto_command(tiny_zoo, tmp_path):
    outp = tmp_path / "front.json"
    assert main(["pareto", "--zoo", str(tiny_zoo), "--tasks", "task0,task1", "--points", "3", "--methods",
                 "ta,tara-b", "--steps", "2", "--warm-steps", "1", "--backend", "local", "--out", str(outp)]) == 0
    rows = json.loads(outp.read_text())
    assert {r["method"] for r in rows} == {"ta", "tara-b", "individual:task0", "individual:task1"}


def test_pareto_front_of_a_pair_model(tiny_zoo, tmp_path, monkeypatch):
    """--context pair: the preference model of the two tasks alone (fitted once, cached), at its vertices each
    adapter alone, since the model starts as TA with task weights N·ρ and a vertex keeps only its own task."""
    monkeypatch.setenv("TARA_CACHE", str(tmp_path / "cache"))
    outp = tmp_path / "front.json"
    assert main(["pareto", "--zoo", str(tiny_zoo), "--tasks", "task0,task2", "--points", "2", "--methods",
                 "tara-b-pareto", "--param", "tara-b-pareto.steps=2", "--context", "pair", "--backend", "local",
                 "--out", str(outp)]) == 0
    rows = json.loads(outp.read_text())
    assert {r["method"] for r in rows} == {"tara-b-pareto", "individual:task0", "individual:task2"}
    assert len(list((tmp_path / "cache" / "preference").rglob("*.safetensors"))) == 1


@pytest.mark.parametrize("args, match", [
    (["diagnose", "--what", "erank,bogus"], "--what"),
    (["pareto", "--tasks", "task0", "--out", "x.json"], "exactly two"),
    (["pareto", "--tasks", "task0,nope", "--out", "x.json"], "unknown task"),
    (["pareto", "--tasks", "task0,task1", "--methods", "ta,zz", "--out", "x.json"], "unknown method"),
    (["pareto", "--tasks", "task0,task1", "--context", "task0,task2", "--out", "x.json"], "must include both"),
    (["pareto", "--tasks", "task0,task1", "--context", "task0,nope", "--out", "x.json"], "unknown task"),
])
def test_diagnose_pareto_errors(tiny_zoo, capsys, args, match):
    assert main([args[0], "--zoo", str(tiny_zoo), *args[1:]]) == 2
    assert match in capsys.readouterr().err


def test_every_subcommand_explains_itself():
    import argparse

    from tara_core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, cmd in sub.choices.items():
        assert "examples:" in (cmd.description or ""), name
        for action in cmd._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, (name, action.dest)
