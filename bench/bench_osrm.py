"""OSRM's covariance collection and eigendecomposition per module: streamed vs the naive stacked way.

For one module of input width d and T collected input vectors (tokens), compares

* **streamed** (tara_core.osrm.SecondMoment): S += XᵀX per batch of ``--batch-tokens``, fp64, then
  ``torch.linalg.eigh`` — memory O(d²) whatever T is;
* **naive**: stack all T activations (fp32, T × d) and form HᵀH / T at the end, then ``eigh``.

Each (shape, mode) runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own.
Shapes: demo-vision (d = 128), demo-text MiniLM (d = 384), LLaMA-3-8B q_proj (d = 4096).

    .venv/bin/python bench/bench_osrm.py
"""
from __future__ import annotations

import sys as _sys
from pathlib import Path as _Path

_sys.path.insert(0, str(_Path(__file__).resolve().parents[1]))  # run from a checkout: python bench/<name>.py

import argparse
import json
import subprocess
import sys
import time

CASES = [("demo-vision ViT (d=128)", 128, 48 * 50 * 5), ("demo-text MiniLM (d=384)", 384, 48 * 32 * 5),
         ("LLaMA-3-8B q_proj (d=4096)", 4096, 48 * 512 * 5)]


def run_case(d: int, tokens: int, mode: str, batch_tokens: int) -> dict:
    import resource

    import torch

    from tara_core.osrm import SecondMoment, osrm_init

    g = torch.Generator().manual_seed(0)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if mode == "streamed":
        m = SecondMoment(torch.zeros(d, d, dtype=torch.float64))
        for start in range(0, tokens, batch_tokens):
            m.add(torch.randn(min(batch_tokens, tokens - start), d, generator=g))
        C = m.mean()
    else:
        H = torch.cat([torch.randn(min(batch_tokens, tokens - s), d, generator=g) for s in range(0, tokens, batch_tokens)])
        C = (H.double().T @ H.double()) / H.shape[0]
    collect = time.perf_counter() - t0
    t1 = time.perf_counter()
    osrm_init(C, 16)
    eig = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"collect_s": collect, "eigh_s": eig, "peak_mb": peak / 1024, "delta_mb": (peak - base_rss) / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-tokens", type=int, default=2048)
    ap.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        d, tokens, mode = int(args.case[0]), int(args.case[1]), args.case[2]
        print(json.dumps(run_case(d, tokens, mode, args.batch_tokens)))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="OSRM second moment + eigh per module (2-core CPU; fresh process per row)")
    for col in ("shape", "tokens T", "mode", "collect s", "eigh s", "peak RSS MB", "T×d fp32 stack MB"):
        table.add_column(col, justify="left" if col in ("shape", "mode") else "right")
    for label, d, tokens in CASES:
        for mode in ("streamed", "naive"):
            out = subprocess.run([sys.executable, __file__, "--case", str(d), str(tokens), mode,
                                  "--batch-tokens", str(args.batch_tokens)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            table.add_row(label, str(tokens), mode, f"{r['collect_s']:.2f}", f"{r['eigh_s']:.2f}",
                          f"{r['peak_mb']:.0f}", f"{tokens * d * 4 / 2**20:.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
