"""Data-driven methods (AdaMerging, TARA-A/B, their preference models): settings, validated, as registry
parameters.

The optimization lives in :mod:`tara_core.optimize` and the preference models in :mod:`tara_core.preference`;
this module only describes what they accept so that the registry, the CLI (``--param key=value``) and
``methods`` list the same fields and defaults.
"""
from __future__ import annotations

import typing
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .base import MergeError, Param


MERGE_SET_HELP = ("unlabeled inputs per task (default: the zoo's val split, 256 on the demo zoos; more adds the "
                  "first inputs of the zoo's shipped unlabeled pool)")


class OptimizeConfig(BaseModel):
    """Settings of a data-driven merge; unknown names and out-of-range values are rejected."""

    model_config = ConfigDict(extra="forbid")
    steps: int | None = Field(None, ge=0, le=100_000,
                              description="optimization steps; default: the reference code's rule, epochs × min(50, "
                                          "batches in the smallest task's unlabeled set)")
    epochs: int = Field(5, ge=1, le=10_000, description="epochs of the default step rule (the reference: 5 for "
                                                        "vision, 10 for NLI)")
    lr: float = Field(1e-3, gt=0, le=10, description="AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, le=10, description="AdamW weight decay (PyTorch's default; pulls φ to 0)")
    batch_size: int = Field(16, ge=1, le=4096, description="unlabeled examples per task per step")
    merge_set: int | None = Field(None, ge=1, le=1_000_000, description=MERGE_SET_HELP)
    phi_init: float = Field(0.4, ge=-100, le=100, description="initial coefficient (0.4 = Task Arithmetic with λ = 0.4)")
    start: Literal["fixed", "ta-kl"] = Field(
        "fixed", description="where φ starts: fixed at phi_init (the paper), or ta-kl: at the Task Arithmetic λ "
                             "(grid 0.05–1) whose merge is closest, in mean KL over tasks, to each adapter's own "
                             "predictions on its unlabeled inputs (no labels; replaces phi_init)")
    loss: Literal["entropy", "kl"] = Field(
        "entropy", description="per-task loss: predictive entropy (the paper) or KL to each adapter's own "
                               "predictions on its unlabeled inputs (distillation; no labels)")
    gap: Literal["raw", "ta"] = Field(
        "raw", description="raw: f_i − z_i (the paper); ta: max(f_i − z_i, 0) / (f_i(TA) − z_i), never negative")
    scalarization: Literal["stch", "stch-abs", "linear"] = Field(
        "stch", description="how ρ combines the task gaps: smooth Tchebycheff, with |·|, or a weighted sum")
    alpha: float = Field(1.0, gt=0, le=1000, description="STCH temperature α")
    sharpness: float = Field(1.0, ge=0.25, le=8, description="γ: the scalarization weighs the tasks by ρ^γ "
                                                            "(renormalized; 1: ρ itself)")
    seed: int = Field(0, description="seed of the data order")
    clamp_min: float | None = Field(None, ge=-1e6, le=1e6, description="optional lower bound on φ (default: unconstrained)")
    clamp_max: float | None = Field(None, ge=-1e6, le=1e6, description="optional upper bound on φ")
    mode: Literal["auto", "materialized", "side"] = Field("auto", description="how each module applies ΔW(φ)")
    bf16: bool = Field(False, description="bf16 autocast of the backbone (CUDA, or a CPU with native bf16)")

    @model_validator(mode="after")
    def _clamp_order(self):
        if self.clamp_min is not None and self.clamp_max is not None and self.clamp_min > self.clamp_max:
            raise ValueError(f"clamp_min ({self.clamp_min}) is larger than clamp_max ({self.clamp_max})")
        return self


class PreferenceConfig(BaseModel):
    """Settings of a preference model φ(ρ) (``tara-a-pareto`` / ``tara-b-pareto``, :mod:`tara_core.preference`):
    the fit (Pareto set learning over ρ ~ Dirichlet), its objective, and the optional per-ρ refinement."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(220, ge=0, le=100_000, description="fit steps, one sampled ρ and one batch per task each")
    lr: float = Field(5e-3, gt=0, le=1.0, description="Adam learning rate of the shared profile and per-task scales")
    schedule: Literal["constant", "cosine"] = Field("constant", description="learning rate over the fit: constant, "
                                                                          "or cosine decay from lr to 0")
    weight_decay: float = Field(0.0, ge=0, le=10, description="AdamW weight decay of the profiles")
    batch_size: int = Field(16, ge=1, le=4096, description="unlabeled examples per task per step")
    merge_set: int | None = Field(None, ge=1, le=1_000_000, description=MERGE_SET_HELP)
    phi_init: float = Field(0.4, ge=-10, le=10, description="φ at uniform ρ before fitting (TA, λ = 0.4)")
    features: Literal["linear", "quadratic", "rational"] = Field(
        "linear", description="ψ(ρ): x = N ρ − 1 (linear), with x² (quadratic) or with x/(x+2) (rational)")
    scale_form: Literal["affine", "proportional"] = Field(
        "proportional", description="per-task scale of φ: affine s_t = 1 + Aψ(ρ) (a task at ρ = 0 may keep part of its "
                              "adapter), or proportional N ρ_t (1 + Aψ(ρ)) (ρ_t = 0 leaves task t's adapter out "
                              "exactly, as TA's task weights do)")
    rank: int = Field(0, ge=0, le=64, description="rank of the ρ-dependent part of the profile (0: per-task "
                                                 "scales only)")
    low_rank_lr: float = Field(0.1, ge=0, le=10, description="learning rate of the low-rank part, relative to lr")
    loss: Literal["entropy", "kl"] = Field("kl", description="per-task loss (see tara-b's 'loss')")
    gap: Literal["raw", "ta"] = Field("ta", description="task gap the preference weighs (see tara-b's 'gap')")
    scalarization: Literal["stch", "stch-abs", "linear"] = Field("stch", description="how ρ combines the gaps")
    alpha: float = Field(0.1, gt=0, le=1000, description="STCH temperature α")
    sharpness: float = Field(3.0, ge=0.25, le=8, description="γ: the scalarization weighs the tasks by ρ^γ "
                                                            "(renormalized; 1: ρ itself)")
    concentration: float = Field(1.0, gt=0, description="Dirichlet concentration of the sampled ρ (1: uniform over "
                                                        "the simplex; 2: more samples near uniform ρ)")
    face_prob: float = Field(0.25, ge=0, le=1, description="share of sampled ρ on a random face of the simplex "
                                                          "(some tasks at 0, vertices included)")
    seed: int = Field(0, description="seed of the data order and the sampled ρ")
    mode: Literal["auto", "materialized", "side"] = Field("auto", description="how each module applies ΔW(φ)")
    bf16: bool = Field(False, description="bf16 autocast of the backbone (CUDA, or a CPU with native bf16)")
    refine_steps: int = Field(0, ge=0, le=100_000, description="per-ρ steps warm-started from φ(ρ) (0: φ(ρ) as is)")
    refine_lr: float = Field(1e-2, gt=0, le=1.0, description="learning rate of the refinement steps")
    model: str | None = Field(None, description="a fitted model file (.safetensors) to use instead of the "
                                                "zoo's shipped one or the cache")
    refit: bool = Field(False, description="fit again even when a fitted model for this zoo, tasks and "
                                           "settings is shipped or cached")

    def fit_fields(self) -> dict:
        """The settings a fitted model depends on (what its cache key and file record). A field added after
        models were shipped is left out while it has the value every earlier fit had (``FIELDS_ADDED_LATER``),
        so those models keep their keys and stay valid."""
        fields = self.model_dump(exclude={"refine_steps", "refine_lr", "model", "refit"})
        for name, before in FIELDS_ADDED_LATER.items():
            if fields[name] == before:
                del fields[name]
        return fields


# the value every fit had before the field existed: recorded only when it differs
FIELDS_ADDED_LATER = {"schedule": "constant", "scale_form": "affine", "merge_set": None}


def _parse(cls, params: dict):
    try:
        return cls(**params)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ".".join(str(x) for x in first["loc"]) or "parameters"
        if not first["loc"]:  # a check across fields
            raise MergeError(str(first["msg"]).removeprefix("Value error, ")) from None
        if first["type"] == "extra_forbidden":
            raise MergeError(f"unknown parameter {name!r}; known: {sorted(cls.model_fields)}") from None
        raise MergeError(f"parameter {name!r}: {first['msg']} (got {first.get('input')!r})") from None


def parse_config(params: dict) -> OptimizeConfig:
    return _parse(OptimizeConfig, params)


def parse_preference_config(params: dict) -> PreferenceConfig:
    return _parse(PreferenceConfig, params)


def config_params(cls: type[BaseModel] = OptimizeConfig) -> tuple[Param, ...]:
    """A config's fields as registry parameters (same names, defaults and help)."""
    out = []
    for name, f in cls.model_fields.items():
        ann = f.annotation
        choices = None
        if typing.get_origin(ann) is Literal:
            kind, choices = str, tuple(typing.get_args(ann))
        elif ann in (int, float, bool, str):
            kind = ann
        else:  # Optional[float] / Optional[str]
            kind = next(a for a in typing.get_args(ann) if a is not type(None))
        out.append(Param(name, f.default, f.description or name, kind=kind, choices=choices))
    return tuple(out)
