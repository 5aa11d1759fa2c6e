"""Zoos: loading, verification, tampering, disjoint splits, and evaluation against an independent path."""
from __future__ import annotations

import gzip
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from tara_core.cli import main
from tara_core.evaluate import evaluate, merged_overrides
from tara_core.methods import merge
from tara_core.recipes.demo_text import held_out_indices, split_indices
from tara_core.zoo import REPO_ZOOS, ZooError, open_zoo, write_manifest
from zoo_fixture import build_tiny_zoo


@pytest.fixture(scope="session")
def tiny_zoo(tmp_path_factory):
    return build_tiny_zoo(tmp_path_factory.mktemp("zoo"))


def test_tiny_zoo_opens_and_verifies(tiny_zoo):
    zoo = open_zoo(tiny_zoo)
    assert zoo.task_names == ["task0", "task1", "task2"]
    assert not zoo.verify_hashes()
    assert [h.num_classes for h in zoo.heads] == [2, 3, 4]
    assert main(["zoo", "verify", str(tiny_zoo)]) == 0


def test_hand_checked_base_accuracy_is_exactly_half(tiny_zoo):
    zoo = open_zoo(tiny_zoo)
    assert evaluate(zoo, None, tasks=[0])["task0"] == pytest.approx(50.0)
    assert zoo.manifest.tasks[0].base_accuracy == pytest.approx(50.0)


def test_eval_matches_peft_merge_and_unload(tiny_zoo):
    """Our functional W0+ΔW path vs PEFT's own merged model, head and pooling written out here."""
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    zoo = open_zoo(tiny_zoo)
    for i, name in enumerate(zoo.task_names):
        base = AutoModel.from_pretrained(tiny_zoo / "base").eval()
        merged = PeftModel.from_pretrained(base, tiny_zoo / "adapters" / name).merge_and_unload().eval()
        tok = AutoTokenizer.from_pretrained(tiny_zoo / "base")
        data = zoo.data[i]
        enc = tok(data.test_inputs, padding=True, truncation=True, max_length=16, return_tensors="pt")
        with torch.no_grad():
            h = merged(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        feats = (h * m).sum(1) / m.sum(1)
        logits = 5.0 * F.normalize(feats, dim=-1) @ F.normalize(zoo.heads[i].weight, dim=-1).T
        expected = 100.0 * float((logits.argmax(-1) == data.test_labels).float().mean())
        ours = evaluate(zoo, merge(zoo.adapters.subset([i]), "cat"), tasks=[i])[name]
        assert ours == pytest.approx(expected)
        assert zoo.manifest.tasks[i].individual_accuracy == pytest.approx(expected, abs=0.01)


def test_eval_of_a_merge_on_the_first_examples_matches_a_dense_forward(tiny_zoo):
    """evaluate(limit=n) of a multi-adapter merge: each task's accuracy on its first n test examples equals a dense
    forward through the merged weights with its head and pooling written out here (limits that cut the tasks'
    length buckets included), with or without a progress callback."""
    zoo = open_zoo(tiny_zoo)
    merged = merge(zoo.adapters, "ties", **{"lambda": 0.7})
    overrides = merged_overrides(zoo, merged)
    for limit in (None, 3, 7):
        expected = {}
        for i, name in enumerate(zoo.task_names):
            data = zoo.data[i]
            enc = zoo.backbone.tokenizer(data.test_inputs[:limit], padding=True, truncation=True, max_length=16,
                                         return_tensors="pt")
            with torch.no_grad():
                h = torch.func.functional_call(zoo.backbone.model, overrides, args=(), kwargs=dict(enc),
                                               strict=False).last_hidden_state
            m = enc["attention_mask"].unsqueeze(-1).float()
            logits = 5.0 * F.normalize((h * m).sum(1) / m.sum(1), dim=-1) @ F.normalize(zoo.heads[i].weight, dim=-1).T
            expected[name] = 100.0 * float((logits.argmax(-1) == data.test_labels[:limit]).float().mean())
        assert evaluate(zoo, merged, limit=limit) == pytest.approx(expected)
        assert evaluate(zoo, merged, limit=limit, progress=lambda done, total: None) == pytest.approx(expected)


def test_eval_cli_writes_tidy_rows(tiny_zoo, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["eval", "--zoo", str(tiny_zoo), "--methods", "ta,ties", "--param", "ties.density=0.5",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert len(rows) == 2 * 4
    for r in rows:
        assert {"method", "task", "accuracy", "individual_accuracy", "normalized_accuracy"} <= set(r)
    avg = [r for r in rows if r["method"] == "ta" and r["task"] == "average"][0]
    per = [r["normalized_accuracy"] for r in rows if r["method"] == "ta" and r["task"] != "average"]
    assert avg["normalized_accuracy"] == pytest.approx(sum(per) / 3)


def test_tampered_file_is_detected(tiny_zoo, tmp_path):
    copy_dir = tmp_path / "tampered"
    shutil.copytree(tiny_zoo, copy_dir)
    f = copy_dir / "adapters" / "task1" / "adapter_model.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="files changed, missing or unlisted.*task1"):
        open_zoo(copy_dir)
    assert main(["zoo", "verify", str(copy_dir)]) == 2


def test_corrupt_manifest_and_data(tiny_zoo, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_zoo, bad)
    manifest = json.loads((bad / "zoo.json").read_text())
    manifest["tasks"][0]["classes"] = "not a list"
    write_manifest(bad, manifest)  # sealed, but against the schema
    with pytest.raises(ZooError, match="invalid manifest at tasks.0.classes"):
        open_zoo(bad)
    (bad / "zoo.json").write_text("{")
    with pytest.raises(ZooError, match="cannot read"):
        open_zoo(bad)
    with pytest.raises(ZooError, match="no zoo named 'missing-zoo'"):
        open_zoo("missing-zoo")


def test_manifest_tampering_is_detected(tiny_zoo, tmp_path):
    """zoo.json is covered too: an edited value, a deleted file entry or list, an unlisted or escaping file."""
    def copy(name):
        d = tmp_path / name
        shutil.copytree(tiny_zoo, d)
        return d, json.loads((d / "zoo.json").read_text())

    d, m = copy("edited")
    m["tasks"][0]["anchor_entropy"] = 0.0
    (d / "zoo.json").write_text(json.dumps(m))
    with pytest.raises(ZooError, match="digest mismatch"):
        open_zoo(d)
    d, m = copy("entry-deleted")  # the weights' entry removed, then the weights changed
    weights = "adapters/task1/adapter_model.safetensors"
    del m["files"][weights]
    (d / "zoo.json").write_text(json.dumps(m))
    with pytest.raises(ZooError, match="digest mismatch"):
        open_zoo(d)
    write_manifest(d, m)  # even re-sealed, the unlisted weight file is an error
    with pytest.raises(ZooError, match="unlisted"):
        open_zoo(d)
    d, m = copy("list-deleted")
    m["files"] = {}
    write_manifest(d, m)
    with pytest.raises(ZooError, match="lists no files"):
        open_zoo(d)
    d, m = copy("no-digest")
    del m["digest"]
    (d / "zoo.json").write_text(json.dumps(m))
    with pytest.raises(ZooError, match="no digest"):
        open_zoo(d)
    d, m = copy("escape")
    m["tasks"][0]["data"] = "../../outside.json.gz"
    write_manifest(d, m)
    with pytest.raises(ZooError, match="points outside"):
        open_zoo(d)
    d, m = copy("bad-name")
    m["tasks"][0]["name"] = "../evil"
    write_manifest(d, m)
    with pytest.raises(ZooError, match="cannot be used as a file name"):
        open_zoo(d)
    d, m = copy("extra-file")
    (d / "data" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ZooError, match="extra.bin .unlisted"):
        open_zoo(d)


def test_labels_outside_classes_are_refused(tiny_zoo, tmp_path):
    bad = tmp_path / "labels"
    shutil.copytree(tiny_zoo, bad)
    f = bad / "data" / "task0.json.gz"
    payload = json.loads(gzip.decompress(f.read_bytes()))
    payload["test"]["labels"][0] = 7
    f.write_bytes(gzip.compress(json.dumps(payload).encode()))
    zoo = open_zoo(bad, check_hashes=False)
    with pytest.raises(ZooError, match="labels outside"):
        zoo.data


def test_split_indices_are_disjoint_and_deduplicated():
    texts = [f"text {i % 50}" for i in range(200)] + ["Text  1", "TEXT 2"]
    train, val, test = split_indices(texts, seed=3, sizes=(10, 10, 100))
    assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))
    norm = {i: " ".join(texts[i].lower().split()) for i in train + val + test}
    assert len(set(norm.values())) == len(norm) == 50
    assert split_indices(texts, 3, (10, 10, 100)) == (train, val, test)


def test_vision_dev_and_pool_rows_come_from_train_only():
    from tara_core.recipes.demo_vision import split_images, train_side_rows

    train, val, test = split_images(1797, 3, (500, 256, 1041))  # the 8×8 digits: nothing is left over
    dev, pool = train_side_rows(train, 200, 744)
    assert len(dev) == 200 and len(pool) == 744 and not set(dev) & set(pool)
    assert set(dev) | set(pool) <= set(train) and not (set(dev) | set(pool)) & (set(val) | set(test))
    with pytest.raises(ValueError, match="train images"):
        train_side_rows(train, 300, 744)


def test_held_out_indices_are_the_unique_texts_no_split_uses():
    texts = [f"text {i % 50}" for i in range(200)]
    sizes = (10, 5, 20)
    train, val, test = split_indices(texts, seed=3, sizes=sizes)
    held = held_out_indices(texts, 3, sizes)
    assert len(held) == 50 - 35 and not set(held) & set(train + val + test)
    assert {texts[i] for i in held + train + val + test} == set(texts)  # every unique text exactly once


def _key(x) -> str:
    """A comparable identity for an input: normalized text, or the image's pixel bytes."""
    return " ".join(x.lower().split()) if isinstance(x, str) else bytes(x).hex()


@pytest.mark.parametrize("name", ["demo-text", "demo-vision"])
def test_shipped_zoo_is_consistent_and_disjoint(name):
    if not (REPO_ZOOS / name / "zoo.json").is_file():
        pytest.skip(f"{name} not built")
    zoo = open_zoo(name)  # every file hash checked
    assert len(zoo.task_names) >= 6
    assert len({len(t.classes) for t in zoo.manifest.tasks}) >= 3  # different label spaces
    for t, data in zip(zoo.manifest.tasks, zoo.data):
        assert not ({_key(x) for x in data.val} & {_key(x) for x in data.test_inputs}), t.name
        chance = 100.0 / len(t.classes)
        assert t.individual_accuracy > max(chance + 10, t.base_accuracy + 3), t.name
        assert t.licence and t.source


@pytest.mark.skipif(not (REPO_ZOOS / "demo-vision" / "zoo.json").is_file(), reason="demo-vision not built")
def test_demo_vision_adapters_reproduce_recorded_accuracy():
    """The project-pretrained ViT backbone, prototype heads and shipped adapters end to end (zoo verify)."""
    assert main(["zoo", "verify", "demo-vision"]) == 0


def test_concurrent_merged_forwards_do_not_mix(tiny_zoo):
    """functional_call swaps override tensors into the shared module during a forward: forwards from two
    threads (two dashboard sessions) must each see only their own merge."""
    import threading

    from tara_core.evaluate import merged_overrides

    zoo = open_zoo(tiny_zoo)
    bb = zoo.backbone
    batch = bb.preprocess(zoo.data[0].val)
    merges = [merged_overrides(zoo, merge(zoo.adapters.subset([i]), "cat")) for i in range(3)]
    expected = [bb.features(batch, w) for w in merges]
    errors = []

    def worker(i):
        try:
            for _ in range(20):
                out = bb.features(batch, merges[i % 3])
                if not torch.allclose(out, expected[i % 3]):
                    errors.append(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_adapter_configs_are_canonicalized_for_stable_hashes(tmp_path):
    from tara_core.recipes import canonicalize_adapter_configs

    folder = tmp_path / "adapters" / "a"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": 8, "target_modules": ["value", "key", "query"]}))
    assert canonicalize_adapter_configs(tmp_path) == [folder / "adapter_config.json"]
    assert json.loads((folder / "adapter_config.json").read_text())["target_modules"] == ["key", "query", "value"]
    assert canonicalize_adapter_configs(tmp_path) == []  # idempotent: a sorted config is left as written


@pytest.mark.parametrize("name", ["demo-text", "demo-vision", "demo-text-osrm", "demo-vision-osrm"])
def test_shipped_adapter_configs_are_canonical(name, tmp_path):
    from tara_core.recipes import canonicalize_adapter_configs

    copy_root = tmp_path / name
    shutil.copytree(REPO_ZOOS / name / "adapters", copy_root / "adapters")
    assert canonicalize_adapter_configs(copy_root) == []


def test_a_second_precompute_of_the_same_zoo_is_refused_while_one_runs(tiny_zoo, tmp_path):
    """Two precomputes of one zoo would delete each other's staging folder: while one holds the zoo (here this
    test, through the same lock), another is refused at once in one line and writes nothing; after, the lock is
    free (a flock, released with its holder)."""
    from tara_core.recipes import precompute_zoo
    from tara_core.safe_io import OutputError, exclusive

    folder = tmp_path / "tiny-text"
    shutil.copytree(tiny_zoo, folder)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    with exclusive(folder, "zoo"):
        with pytest.raises(OutputError, match="being written by another process") as exc:
            precompute_zoo(folder, log=lambda *a: None)
        assert "\n" not in str(exc.value)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    with exclusive(folder, "zoo"):  # released: it can be taken again
        pass


def test_precompute_ships_the_preference_model_and_first_views(tiny_zoo, tmp_path, monkeypatch):
    from tara_core import firstview
    from tara_core.recipes import precompute_zoo

    folder = tmp_path / "tiny-text"
    shutil.copytree(tiny_zoo, folder)
    monkeypatch.setattr(firstview, "DEFAULTS", {**firstview.DEFAULTS, "merge": {**firstview.DEFAULTS["merge"],
                                                                              "preview": 5, "limit": 10},
                                                "pareto": {**firstview.DEFAULTS["pareto"], "steps": 5}})
    from tara_core.methods.learned import PreferenceConfig
    monkeypatch.setattr(PreferenceConfig.model_fields["steps"], "default", 5)
    first = precompute_zoo(folder, log=lambda *a: None)
    stale = folder / "results" / "evaluation-0000000000000000.json"  # listed, but no first view asks for it
    stale.write_text("{}")
    manifest = json.loads((folder / "zoo.json").read_text())
    manifest["files"][f"results/{stale.name}"] = "0" * 64
    from tara_core.zoo import write_manifest

    write_manifest(folder, manifest)
    logs = []
    import tara_core.run as run

    real_run = run.run_method
    monkeypatch.setattr(run, "run_method", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    written = precompute_zoo(folder, log=logs.append)  # again: the model and every first view are kept
    monkeypatch.setattr(run, "run_method", real_run)
    assert any("up to date" in line for line in logs)
    assert any(f"{len(first)} kept, 0 computed, 1 dropped" in line for line in logs), logs
    assert written == first and not stale.exists()
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []  # staging swapped in
    zoo = open_zoo(folder)  # sealed and every new file listed
    assert {"preference/tara-b.safetensors", "preference/tara-b.json"} <= set(zoo.manifest.files)
    assert written and all(w in zoo.manifest.files for w in written)
    # the first views are read from the shipped files: nothing is merged or evaluated
    import tara_core.run as run

    monkeypatch.setattr(run, "run_method", lambda *a, **k: (_ for _ in ()).throw(AssertionError("computed")))
    n = len(zoo.task_names)
    assert firstview.evaluation(zoo, "tara-b-pareto", rho=[1 / n] * n, limit=10)["accuracy"]
    for k in range(n):  # each slider dragged to 0: the larger result too, not only the quick estimate
        drop = firstview.normalized_rho([0.0 if i == k else 1.0 for i in range(n)])
        assert firstview.evaluation(zoo, "tara-b-pareto", rho=drop, limit=10)["accuracy"]
        assert firstview.evaluation(zoo, "tara-b-pareto", rho=drop, limit=10, stored_only=True)["accuracy"]
    assert firstview.evaluation(zoo, "tara-b-pareto", rho=[0.2, 0.3, 0.5], limit=10, stored_only=True) is None
    assert firstview.evaluation(zoo, "ta", limit=10)["accuracy"]
    assert len(firstview.coverage_frame(zoo)) > 0
    assert firstview.ships_first_views(zoo) and not firstview.ships_first_views(open_zoo(tiny_zoo))


def test_concurrent_first_access_loads_the_backbone_once(tiny_zoo, monkeypatch):
    """The dashboard loads a zoo's backbone in a background thread while a page may ask for it: both callers
    get the same object and the loader runs once."""
    import threading
    import time

    from tara_core import zoo as zoo_module

    zoo = open_zoo(tiny_zoo)
    calls = []
    real = zoo_module.Zoo.backbone.fget.__wrapped__

    def backbone(self):  # the property's name keys its lock
        calls.append(threading.current_thread().name)
        time.sleep(0.2)
        return real(self)

    monkeypatch.setattr(zoo_module.Zoo, "backbone", zoo_module._loaded_once(backbone))
    got = []
    threads = [threading.Thread(target=lambda: got.append(zoo.backbone)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 3 and all(b is got[0] for b in got)


def test_precompute_adopts_a_cached_fit_instead_of_refitting(tiny_zoo, tmp_path, monkeypatch):
    """A fit the CLI or dashboard already cached (same zoo files, default settings) is verified and copied into the
    zoo; a cached file that does not verify is not adopted."""
    from tara_core import preference
    from tara_core.methods.learned import PreferenceConfig
    from tara_core.recipes import _adopt_cached_fit

    monkeypatch.setenv("TARA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(PreferenceConfig.model_fields["steps"], "default", 3)
    folder = tmp_path / "tiny-text"
    shutil.copytree(tiny_zoo, folder)
    shutil.rmtree(folder / "preference", ignore_errors=True)
    zoo = open_zoo(folder, check_hashes=False, require_digest=False)
    model, cached = preference.preference_model_for(zoo, "tara-b")  # fitted and cached
    fingerprint = preference.zoo_fingerprint(zoo)
    shipped = preference.shipped_path(zoo, "tara-b")
    assert _adopt_cached_fit(cached.with_suffix(""), shipped, fingerprint)
    again = preference.load_model(shipped, {"fingerprint": fingerprint})
    assert torch.equal(again.task_scale, model.task_scale)
    assert not list(shipped.parent.glob(".*"))  # no temporary file left
    assert not _adopt_cached_fit(cached.with_suffix(""), shipped, "0" * 64)  # another zoo's files: refused
    cached.write_bytes(b"not a safetensors file")
    assert not _adopt_cached_fit(cached.with_suffix(""), shipped, fingerprint)  # corrupt: refused


def test_an_evaluation_stopped_from_its_progress_stores_nothing(tiny_zoo, tmp_path, monkeypatch):
    """The Merge page stops a long evaluation from its progress callback when a newer slider move asks for a
    rerun: nothing half-computed may be stored, and the next call computes it whole."""
    from tara_core import firstview

    monkeypatch.setenv("TARA_CACHE", str(tmp_path / "cache"))
    zoo = open_zoo(tiny_zoo)
    n = len(zoo.task_names)

    class Rerun(Exception):
        pass

    def stop_after_first(done, total):
        raise Rerun

    with pytest.raises(Rerun):
        firstview.evaluation(zoo, "ta", limit=7, progress=stop_after_first)
    assert not list((tmp_path / "cache").rglob("evaluation-*.json"))
    calls = []
    full = firstview.evaluation(zoo, "ta", limit=7, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(k + 1, n) for k in range(n)] and len(full["accuracy"]) == n
    assert len(list((tmp_path / "cache").rglob("evaluation-*.json"))) == 1
    calls.clear()  # stored: read back without computing (no progress)
    assert firstview.evaluation(zoo, "ta", limit=7, progress=lambda d, t: calls.append(d)) == full and not calls


def test_next_rhos_are_steps_and_ends_of_the_sliders():
    from tara_core.firstview import next_rhos, normalized_rho

    assert normalized_rho([0.0, 0.0, 0.0]) == [0.333333] * 3 and normalized_rho([2.0, 1.0, 1.0]) == [0.5, 0.25, 0.25]
    third, step = 0.338983, 0.322034  # a slider at 0.95, the others at 1
    ones = next_rhos([1.0, 1.0, 1.0])
    assert ones[:6] == [
        [step, third, third], [0.0, 0.5, 0.5],  # the first slider a step down (1.05 is past the end), dropped
        [0.5, 0.0, 0.5], [0.5, 0.5, 0.0],  # every other slider dropped (at 1 it is where it is)
        [third, step, third], [third, third, step]]  # every other slider a step down
    # then the rest of the first slider's grid, nearest first: 0.90, 0.85, ..., 0.05 (0.95 and 0 are listed above)
    assert ones[6:] == [normalized_rho([round(0.05 * i, 2), 1.0, 1.0]) for i in range(18, 0, -1)]
    near = next_rhos([0.5, 0.0, 1.0], first=2)
    assert near[:2] == [[0.344828, 0.0, 0.655172], [1.0, 0.0, 0.0]]  # the last-moved slider first: step, then 0
    assert near[2:5] == [[0.0, 0.0, 1.0], [0.5, 0.0, 0.5], [0.2, 0.4, 0.4]]  # the others' ends
    assert len(near[:8]) == 8 and [0.5, 0.0, 1.0] not in near and all(abs(sum(r) - 1) < 1e-5 for r in near)
    grid = [normalized_rho([0.5, 0.0, round(0.05 * i, 2)]) for i in range(19)]  # slider 3 at 0 ... 0.90
    assert sorted(near[8:]) == sorted(r for r in grid if r not in near[:8])  # every click on the moved slider
    assert len(near) == len({tuple(r) for r in near})  # no ρ twice
    assert next_rhos([0.0, 0.0]) == [[1.0, 0.0], [0.0, 1.0]]  # all at 0 is uniform; one step up is a vertex
    # 0.1 or 1 for the first slider normalize to where it is, its 0 to uniform; the second's step up duplicates it
    assert next_rhos([0.05, 0.0], step=0.05) == [[0.5, 0.5], [0.047619, 0.952381]]


def test_first_view_rhos_cover_every_value_of_every_slider():
    from tara_core.firstview import first_view_rhos, next_rhos, normalized_rho

    shipped = first_view_rhos(3)
    assert shipped[:len(next_rhos([1.0] * 3))] == next_rhos([1.0] * 3)  # the first slider's list first, as before
    for k in range(3):  # any click on any slider's track (others at 1) is shipped
        for i in range(20):
            assert normalized_rho([round(0.05 * i, 2) if j == k else 1.0 for j in range(3)]) in shipped
    assert normalized_rho([1.0] * 3) not in shipped and len(shipped) == len({tuple(r) for r in shipped})


def test_extend_adds_pools_and_dev_splits_the_merge_set_reads(tiny_zoo, tmp_path, monkeypatch):
    """`zoo extend` writes each task's unlabeled pool and labeled dev split from its recipe, seals them in zoo.json
    and refits what depends on the files; merge_set then reads val followed by the pool, and the reference step
    rule follows the larger merge set."""
    from tara_core import firstview
    from tara_core.methods.learned import PreferenceConfig
    from tara_core.optimize import MergeData
    from tara_core.recipes.extra import extend_zoo
    from tara_core.run import run_method

    folder = tmp_path / "tiny-text"
    shutil.copytree(tiny_zoo, folder)
    monkeypatch.setattr(firstview, "DEFAULTS", {**firstview.DEFAULTS, "merge": {**firstview.DEFAULTS["merge"],
                                                                              "preview": 5, "limit": 10},
                                                "pareto": {**firstview.DEFAULTS["pareto"], "steps": 5}})
    monkeypatch.setattr(PreferenceConfig.model_fields["steps"], "default", 5)
    assert main(["zoo", "extend", str(folder)]) == 0
    zoo = open_zoo(folder)  # digest and every hash, the extra files listed
    assert {f"data/task{t}.extra.json.gz" for t in range(3)} <= set(zoo.manifest.files)
    assert "preference/tara-b.safetensors" in zoo.manifest.files
    for t, info in enumerate(zoo.manifest.tasks):
        extra = zoo.extra(t)
        assert (info.splits.pool, info.splits.dev) == (len(extra.pool), len(extra.dev_inputs)) == (32, 6)
        assert info.splits.extra_rule and zoo.manifest.build["config"]["merge_set_size"] == 40
        assert not {_key(x) for x in extra.pool} & {_key(x) for x in zoo.data[t].test_inputs}
    again = tmp_path / "again" / "tiny-text"  # the same recipe and config give the same bytes
    shutil.copytree(tiny_zoo, again)
    from tara_core.recipes.extra import write_task_extra
    import zoo_fixture

    task = {"name": "task1", "splits": {}}
    write_task_extra(again, task, *zoo_fixture.task_study_splits(1, zoo_fixture.DEFAULTS), zoo_fixture.STUDY_RULE)
    assert (again / task["extra"]).read_bytes() == (folder / task["extra"]).read_bytes()

    assert zoo.merge_set(0) is zoo.data[0].val and zoo.merge_set(0, 5) == zoo.data[0].val[:5]
    assert zoo.merge_set(0, 20) == list(zoo.data[0].val) + zoo.extra(0).pool[:12]
    with pytest.raises(ZooError, match="merge_set 41 > its 8 val \\+ 32 pool inputs"):
        zoo.merge_set(0, 41)
    assert [len(v) for v in MergeData.from_zoo(zoo, [0, 2], merge_set=40).val] == [40, 40]
    # the reference rule: epochs × min(50, batches of the smallest merge set): 8 inputs → 1 batch of 16, 40 → 3
    _, small = run_method(zoo, "tara-b", {"epochs": 1})
    _, large = run_method(zoo, "tara-b", {"epochs": 1, "merge_set": 40})
    assert (small.steps_run, large.steps_run) == (1, 3)
    assert any(not torch.equal(a, b) for a, b in zip(small.phi.values(), large.phi.values()))


def test_a_zoo_extra_file_that_disagrees_with_its_manifest_is_refused(tiny_zoo, tmp_path):
    from tara_core.recipes import hash_files
    from tara_core.recipes.extra import write_task_extra

    folder = tmp_path / "tiny-text"
    shutil.copytree(tiny_zoo, folder)
    manifest = json.loads((folder / "zoo.json").read_text())
    write_task_extra(folder, manifest["tasks"][0], ["red cat"] * 3, ["big dog", "sun"], [0, 1], "test")
    manifest["tasks"][0]["splits"]["pool"] = 4  # the file has 3
    manifest["files"] = hash_files(folder)
    write_manifest(folder, manifest)
    zoo = open_zoo(folder)
    assert zoo.extra(1).pool == [] and zoo.merge_set(1, 8) == list(zoo.data[1].val)  # a task without one
    with pytest.raises(ZooError, match="pool or dev sizes differ from the manifest"):
        zoo.extra(0)
    with pytest.raises(ZooError, match="does not define a pool and a dev split"):
        manifest["build"]["recipe"] = "tara_core.recipes.local"
        write_manifest(folder, manifest)
        from tara_core.recipes.extra import extend_zoo

        extend_zoo(folder)
    with pytest.raises(ValueError, match="2 dev inputs but 1 labels"):
        write_task_extra(folder, manifest["tasks"][1], [], ["a", "b"], [0], "test")


def test_recipe_pools_and_dev_splits_are_disjoint_from_the_shipped_splits_and_capped():
    import numpy as np

    from tara_core.recipes import demo_text, demo_vision

    texts = [f"text {i}" for i in range(100)]
    labels = [i % 3 for i in range(100)]
    cfg = {"test_size": 10, "val_size": 5, "train_size": 20, "dev_size": 8, "merge_set_size": 30}
    train, val, test = split_indices(texts, seed=3, sizes=(10, 5, 20))
    pool, dev, dev_y = demo_text.study_splits(texts, labels, len(val), 3, cfg)
    assert (len(pool), len(dev)) == (25, 8) and dev_y == [labels[texts.index(x)] for x in dev]
    shipped = {texts[i] for i in train + val + test}
    assert not (set(pool) | set(dev)) & shipped and not set(pool) & set(dev)
    pool, dev, _ = demo_text.study_splits(texts, labels, len(val), 3, {**cfg, "merge_set_size": 1000})
    assert len(pool) == 100 - 35 - 8  # all the source leaves

    images = np.arange(60 * 4, dtype=np.uint8).reshape(60, 2, 2)
    train = np.arange(20, 60)
    pool, dev, dev_y = demo_vision.study_splits(images, np.arange(60) % 4, train, 10, {**cfg, "merge_set_size": 1000})
    assert (len(pool), len(dev)) == (32, 8) and dev_y == [int(r) % 4 for r in train[-8:]]
    assert [p[0] // 4 for p in pool] == train[:32].tolist() and [d[0] // 4 for d in dev] == train[-8:].tolist()
