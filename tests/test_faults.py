"""Fault injection: outputs under kill -9, overwrite, concurrent writers, bad folders and a full disk; every
failure is one `error:` line with exit status 2 and leaves nothing behind."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tara_core.adapters import load_adapter_set
from tara_core.cli import main
from tara_core.export import ExportError, export
from tara_core.methods import merge

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bert_set(families):
    return load_adapter_set(families["bert"].adapters)


def _run_killed(families, out: Path, kill_in: str, overwrite: bool = False) -> int:
    """Export in a child process that SIGKILLs itself in ``save_file`` (while writing) or right after the
    atomic swap of an overwrite ('swap')."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import tara_core.export as ex, tara_core.safe_io as sio
        from tara_core.adapters import load_adapter_set
        from tara_core.methods import merge
        aset = load_adapter_set({[str(p) for p in families["bert"].adapters]!r})
        die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
        if {kill_in!r} == "save_file":
            ex.save_file = die
        else:
            real = sio._exchange
            sio._exchange = lambda a, b: (real(a, b), die())[0]
        ex.export(merge(aset, "ta", **{{"lambda": 0.7}}), aset, {str(out)!r}, overwrite={overwrite})
    """)
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode


def _hidden(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_kill_during_export_leaves_no_output_and_the_next_run_cleans_up(families, bert_set, tmp_path):
    out = tmp_path / "merged"
    assert _run_killed(families, out, "save_file") == -signal.SIGKILL
    assert not out.exists()
    assert _hidden(tmp_path, "merged")  # the partial temp folder of the killed run
    export(merge(bert_set, "ta"), bert_set, out)
    assert (out / "adapter_model.safetensors").is_file() and (out / "merge.json").is_file()
    assert _hidden(tmp_path, "merged") == []  # recovered: the dead run's leftovers are gone


def test_kill_during_overwrite_never_hides_both_outputs(families, bert_set, tmp_path):
    out = tmp_path / "merged"
    export(merge(bert_set, "ta"), bert_set, out)
    old = (out / "merge.json").read_text()
    # killed while writing the new output: the old one is still there, untouched
    assert _run_killed(families, out, "save_file", overwrite=True) == -signal.SIGKILL
    assert (out / "merge.json").read_text() == old
    # killed right after the swap, before the old output is removed: the new one is in place, complete
    assert _run_killed(families, out, "swap", overwrite=True) == -signal.SIGKILL
    assert '"lambda": 0.7' in (out / "merge.json").read_text()
    assert (out / "adapter_model.safetensors").is_file()
    export(merge(bert_set, "ta"), bert_set, tmp_path / "other")  # another target: leftovers of out stay
    export(merge(bert_set, "ta"), bert_set, out, overwrite=True)
    assert _hidden(tmp_path, "merged") == []


def test_two_concurrent_writers_to_one_folder_one_wins(bert_set, tmp_path, monkeypatch):
    import tara_core.export as ex

    out = tmp_path / "merged"
    both_writing = threading.Barrier(2, timeout=30)
    real = ex.save_file

    def slow_save(tensors, path, *a, **k):
        if path.endswith("adapter_model.safetensors"):
            both_writing.wait()  # both runs are past the early check and writing their temp folders
        return real(tensors, path, *a, **k)

    monkeypatch.setattr(ex, "save_file", slow_save)
    results = []

    def run(lam):
        try:
            export(merge(bert_set, "ta", **{"lambda": lam}), bert_set, out)
            results.append("ok")
        except ExportError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=run, args=(lam,)) for lam in (0.3, 0.6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results)[0].startswith(str(out)) and "already exists" in sorted(results)[0]
    assert results.count("ok") == 1
    assert _hidden(tmp_path, "merged") == []


def test_full_disk_is_one_line_and_leaves_nothing(bert_set, tmp_path, monkeypatch):
    import tara_core.export as ex

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ex, "save_file", full)
    with pytest.raises(ExportError, match="no space left on the device"):
        export(merge(bert_set, "ta"), bert_set, tmp_path / "merged")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def cli_adapters(families):
    return [str(p) for p in families["bert"].adapters]


def _cli(args, capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent(cli_adapters, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        code, err = _cli(["merge", "--adapters", *cli_adapters, "--method", "ta", "--out", str(ro / "m")], capsys)
    finally:
        ro.chmod(0o700)
    assert code == 2 and err.startswith("error:") and "\n" not in err
    assert list(ro.iterdir()) == []


@pytest.mark.parametrize("out, message", [
    (".", "not a new folder name"), ("..", "not a new folder name"),
    ("afile/m", "is not a folder"), ("x" * 300, "name too long"),
])
def test_bad_output_folders(cli_adapters, tmp_path, capsys, monkeypatch, out, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("I am a file")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, err = _cli(["merge", "--adapters", *cli_adapters, "--method", "ta", "--out", out], capsys)
    assert code == 2 and err.startswith("error:") and message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_json_path_that_is_a_folder_fails_before_any_work(cli_adapters, tmp_path, capsys):
    (tmp_path / "j").mkdir()
    code, err = _cli(["merge", "--adapters", *cli_adapters, "--method", "ta", "--out", str(tmp_path / "m"),
                      "--json", str(tmp_path / "j")], capsys)
    assert code == 2 and "it is a folder" in err
    assert not (tmp_path / "m").exists()
