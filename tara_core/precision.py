"""Compute precision: fp32 by default; bf16 autocast where the hardware runs bf16 natively.

bf16 autocast is what makes a dashboard slider move feel live on a CPU that has native bf16 matrix units
(AVX512-BF16 / AMX: 1.9× faster TARA steps and 2.8× faster evaluation on demo-text on this machine's 2-core
EPYC) and on CUDA. φ, the optimizer state and the objective stay fp32; only the backbone's matmuls run in
bf16. Results differ from fp32 by rounding (measured in the README's benchmarks), so every reported table is
fp32 unless it says otherwise.
"""
from __future__ import annotations

import contextlib

import torch

__all__ = ["bf16_is_native", "autocast"]


def bf16_is_native(device: str | torch.device = "cpu") -> bool:
    """True when bf16 matmuls are native (and fast) on ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: str | torch.device, bf16: bool):
    """bf16 autocast on ``device`` when ``bf16``; otherwise a no-op context (fp32)."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
