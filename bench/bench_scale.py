"""The paper's scale: TARA-B at full CLIP ViT-B/32 with eight r = 16 adapters, and the factored
decomposition at LLaMA-3-8B shapes — time and peak memory against the obvious alternatives.

Part 1 (``vit``): a randomly initialized full-size CLIP ViT-B/32 (``CLIPConfig()`` defaults, 151 M
parameters) saved as an HF folder, eight random r = 16 adapters in the KnOTS upload layout
(``adapter_model.bin``, ``base_model.model.encoder…`` keys on q/k/v/out_proj), eight small ImageFolder tasks,
imported with ``zoo import`` exactly as a user's files would be. Then, each in a fresh process so the peak
resident memory (``ru_maxrss``) belongs to that configuration alone:

* ``tara_core``: TARA-B as shipped (``mode=auto``: per module a materialized ΔW(φ) or a factored side path,
  N task blocks folded into L = UΣ before the product);
* ``reference``: the reference code's layout — every module a gated rank-(N·R) side path with UΣ repeated per
  task (no folding);
* ``materialized``: every module's ΔW(φ) built densely each step.

Part 2 (``llama``): TARA-B's per-module thin SVD of six concatenated r = 16 adapters at LLaMA-3-8B shapes
(32 layers × q/k/v/o, 4096 / 1024 × 4096), factored (QR of the stacked factors, then an SVD of a small core)
for all 128 modules, against the dense computation (build each ΔW_i, SVD of the 4096 × 6·4096 stack) on one
q_proj and one k_proj.

    .venv/bin/python bench/bench_scale.py --device cpu --steps 3 --batch-size 4
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout: python bench/<name>.py

import argparse
import json
import resource
import string
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

TASKS = ("stanford_cars", "dtd", "eurosat", "gtsrb", "mnist", "resisc45", "sun397", "svhn")


# ---- part 1: ViT-B/32 ---------------------------------------------------------------------------------
def build_vit_zoo(root: Path, rank: int, val_images: int, log) -> Path:
    from PIL import Image
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    from tara_core.recipes.local import ImportSpec, import_zoo

    base = root / "clip-vit-base-patch32"
    base.mkdir(parents=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in string.ascii_lowercase + string.digits + ".,'":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (base / "vocab.json").write_text(json.dumps(vocab))
    (base / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(base / "vocab.json"), str(base / "merges.txt")).save_pretrained(base)
    torch.manual_seed(0)
    cfg = CLIPConfig()  # the ViT-B/32 defaults: vision 768 × 12 layers, patch 32, 224 px; text 512 × 12
    cfg.text_config.bos_token_id, cfg.text_config.eos_token_id = 0, 1
    clip = CLIPModel(cfg).eval()
    clip.save_pretrained(base)
    d = cfg.vision_config.hidden_size
    gen = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(2)
    tasks = []
    for t in TASKS:
        folder = root / "adapters" / t
        folder.mkdir(parents=True)
        state = {}
        for layer in range(cfg.vision_config.num_hidden_layers):
            for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                key = f"base_model.model.encoder.layers.{layer}.self_attn.{proj}"
                state[f"{key}.lora_A.weight"] = torch.randn(rank, d, generator=gen) / d ** 0.5
                state[f"{key}.lora_B.weight"] = torch.randn(d, rank, generator=gen) * 0.01
        torch.save(state, folder / "adapter_model.bin")
        (folder / "adapter_config.json").write_text(json.dumps({
            "peft_type": "LORA", "r": rank, "lora_alpha": rank, "target_modules": ["q_proj", "k_proj", "v_proj", "out_proj"],
            "base_model_name_or_path": "openai/clip-vit-base-patch32"}))
        for split, n in (("val", val_images), ("test", 2)):
            for c in ("a", "b"):
                (root / "data" / t / split / c).mkdir(parents=True)
                for i in range(n):
                    Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(
                        root / "data" / t / split / c / f"{i}.png")
        tasks.append({"name": t, "adapter": str(folder), "individual_accuracy": 50.0,
                      "data": {"layout": "imagefolder", "root": str(root / "data" / t), "val_split": "val"}})
    spec = ImportSpec.model_validate({"name": "vit-b-32-random", "kind": "hf-clip", "base": str(base),
                                      "anchor_samples": 4, "tasks": tasks})
    return import_zoo(spec, root / "zoo", log=log)


def run_config(zoo_dir: str, config: str, steps: int, batch_size: int, device: str) -> dict:
    """One configuration in this process (called in a child process by :func:`main`)."""
    from tara_core.optimize import MergeData, optimize
    from tara_core.tara import ModuleParam, Parameterization, build_parameterization
    from tara_core.zoo import open_zoo

    zoo = open_zoo(zoo_dir, device=device)
    data = MergeData.from_zoo(zoo)
    t0 = time.perf_counter()
    param = build_parameterization(zoo.adapters, "tara-b")
    build_s = time.perf_counter() - t0
    if config == "reference":
        param = Parameterization(param.variant, {m: ModuleParam(p.L.repeat(1, p.blocks), p.Rt, 1, p.task_of_row)
                                                 for m, p in param.modules.items()}, param.n_tasks, param.init, param.clamp)
    if device != "cpu":
        param = param.to(device) if hasattr(param, "to") else param
    mode = {"tara_core": "auto", "reference": "side", "materialized": "materialized"}[config]
    cfg = {"mode": mode, "batch_size": batch_size, "steps": 1}
    optimize(data, zoo.adapters, "tara-b", config=cfg, param=param)  # warm-up (allocator, kernels)
    rec = optimize(data, zoo.adapters, "tara-b", config={**cfg, "steps": steps}, param=param)
    return {"config": config, "coefficients": param.num_parameters, "build_s": build_s,
            "s_per_step": rec.seconds / steps, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ---- part 2: LLaMA-3-8B shapes ------------------------------------------------------------------------------
def llama_decomposition(n_adapters: int, rank: int, layers: int, dense_modules: int) -> list[dict]:
    from tara_core.lowrank import Factors, hconcat_svd

    shapes = {"q_proj": (4096, 4096), "k_proj": (1024, 4096), "v_proj": (1024, 4096), "o_proj": (4096, 4096)}
    gen = torch.Generator().manual_seed(0)
    rows = []
    t0 = time.perf_counter()
    for _ in range(layers):
        for name, (d_out, d_in) in shapes.items():
            fs = [Factors(torch.randn(d_out, rank, generator=gen), torch.randn(rank, d_in, generator=gen))
                  for _ in range(n_adapters)]
            hconcat_svd(fs, rank=n_adapters * rank)
    factored_s = time.perf_counter() - t0
    rows.append({"what": f"factored thin SVD, all {layers * 4} modules", "seconds": factored_s})
    for name in list(shapes)[:dense_modules]:
        d_out, d_in = shapes[name]
        fs = [Factors(torch.randn(d_out, rank, generator=gen), torch.randn(rank, d_in, generator=gen))
              for _ in range(n_adapters)]
        t0 = time.perf_counter()
        hconcat_svd(fs, rank=n_adapters * rank)
        f_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        stack = torch.cat([f.B @ f.A for f in fs], dim=1)
        torch.linalg.svd(stack, full_matrices=False)
        d_s = time.perf_counter() - t0
        rows.append({"what": f"one {name} ({d_out}×{d_in}): factored", "seconds": f_s})
        rows.append({"what": f"one {name}: dense ΔW stack + SVD ({d_out}×{n_adapters * d_in})", "seconds": d_s})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4, help="images per task per step (paper: 16)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--configs", default="tara_core,reference,materialized")
    parser.add_argument("--skip", default="", help="comma list: vit, llama")
    parser.add_argument("--child", nargs=2, metavar=("ZOO", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_config(args.child[0], args.child[1], args.steps, args.batch_size, args.device)))
        return
    console = Console()
    console.print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} threads; "
                  f"CUDA available: {torch.cuda.is_available()}")
    if "vit" not in args.skip:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            zoo = build_vit_zoo(Path(tmp), args.rank, max(args.batch_size, 4) // 2, log=lambda *_: None)
            console.print(f"built and imported the ViT-B/32 zoo in {time.perf_counter() - start:.1f} s")
            table = Table(title=f"TARA-B, CLIP ViT-B/32, 8 adapters r={args.rank}, {args.batch_size} images × 8 tasks "
                                f"per step, {args.device}")
            for col in ("configuration", "coefficients", "parameterization s", "s / step", "peak RSS (MB)"):
                table.add_column(col, justify="left" if col == "configuration" else "right")
            for config in args.configs.split(","):
                out = subprocess.run([_sys.executable, __file__, "--child", str(zoo), config, "--steps", str(args.steps),
                                      "--batch-size", str(args.batch_size), "--device", args.device],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    console.print(f"[red]{config} failed[/]: {out.stderr[-2000:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                table.add_row(config, str(r["coefficients"]), f"{r['build_s']:.2f}", f"{r['s_per_step']:.2f}",
                              f"{r['peak_rss_mb']:.0f}")
            console.print(table)
    if "llama" not in args.skip:
        table = Table(title=f"TARA-B decomposition at LLaMA-3-8B shapes, 6 adapters r={args.rank}, cpu")
        table.add_column("what")
        table.add_column("seconds", justify="right")
        for r in llama_decomposition(6, args.rank, 32, 2):
            table.add_row(r["what"], f"{r['seconds']:.2f}")
        console.print(table)


if __name__ == "__main__":
    main()
