"""Data-driven methods (AdaMerging, TARA-A, TARA-B): their settings, validated, and registry parameters.

The optimization itself lives in :mod:`tara_core.optimize`; this module only describes what it accepts so
that the registry, the CLI (``--param key=value``) and ``methods`` list the same fields and defaults.
"""
from __future__ import annotations

import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .base import MergeError, Param


class OptimizeConfig(BaseModel):
    """Settings of a data-driven merge; unknown names and out-of-range values are rejected."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(250, ge=0, description="optimization steps (the reference code: 5 epochs × 50 = 250)")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay (PyTorch's default; pulls φ to 0)")
    batch_size: int = Field(16, ge=1, description="unlabeled examples per task per step")
    phi_init: float = Field(0.4, description="initial coefficient (0.4 = Task Arithmetic with λ = 0.4)")
    scalarization: Literal["stch", "stch-abs", "linear"] = "stch"
    alpha: float = Field(1.0, gt=0, description="STCH temperature α")
    seed: int = Field(0, description="seed of the data order")
    clamp_min: float | None = Field(None, description="optional lower bound on φ (default: unconstrained)")
    clamp_max: float | None = Field(None, description="optional upper bound on φ")
    mode: Literal["auto", "materialized", "side"] = Field("auto", description="how each module applies ΔW(φ)")
    bf16: bool = Field(False, description="bf16 autocast of the backbone (CUDA, or a CPU with native bf16)")


def parse_config(params: dict) -> OptimizeConfig:
    try:
        return OptimizeConfig(**params)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(x) for x in first["loc"]) or "parameters"
        if first["type"] == "extra_forbidden":
            raise MergeError(f"unknown parameter {name!r}; known: {sorted(OptimizeConfig.model_fields)}") from None
        raise MergeError(f"parameter {name!r}: {first['msg']} (got {first.get('input')!r})") from None




def config_params() -> tuple[Param, ...]:
    """The :class:`OptimizeConfig` fields as registry parameters (same names, defaults and help)."""
    out = []
    for name, f in OptimizeConfig.model_fields.items():
        ann = f.annotation
        choices = None
        if typing.get_origin(ann) is Literal:
            kind, choices = str, tuple(typing.get_args(ann))
        elif ann in (int, float, bool):
            kind = ann
        else:  # Optional[float]
            kind = float
        out.append(Param(name, f.default, f.description or name, kind=kind, choices=choices))
    return tuple(out)
