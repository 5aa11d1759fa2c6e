"""What every merge method shares: parameters, the per-module result type and provenance.

A data-free method is a pure per-module kernel ``kernel(deltas, params, rng) -> ModuleDelta`` where
``deltas[i]`` is task i's ΔW_i = s_i B_i A_i as :class:`~tara_core.lowrank.Factors` (None where adapter i
does not adapt the module). The kernel returns :class:`~tara_core.lowrank.Factors` when the merged ΔW has
rank ≤ Σ r_i (exact, factored) and a dense tensor otherwise (TIES, DARE). The registry (``registry.py``)
wires kernels to names, defaults and papers; :func:`tara_core.merge` runs them over an ``AdapterSet``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import torch

from ..lowrank import Factors

ModuleDelta = Union[Factors, torch.Tensor]


class MergeError(ValueError):
    """Bad method name or parameters, with a message meant for the user."""


@dataclass(frozen=True)
class Param:
    """One method parameter: default, type, allowed range and help text (shown by ``methods``)."""

    name: str
    default: Any
    help: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None

    def coerce(self, value: Any) -> Any:
        """Parse (CLI strings included) and range-check a user value."""
        if value is None:
            return None
        try:
            if self.kind is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                value = value.lower() in ("true", "1", "yes")
            elif self.kind is list:
                if isinstance(value, str):
                    value = [float(x) for x in value.split(",") if x.strip()]
                value = [float(x) for x in value]
            else:
                value = self.kind(value)
        except (TypeError, ValueError):
            raise MergeError(f"parameter {self.name!r}: cannot read {value!r} as {self.kind.__name__}") from None
        if self.kind in (int, float):
            if not math.isfinite(value) or abs(value) > 1e30:  # beyond float32 arithmetic on the weights
                raise MergeError(f"parameter {self.name!r} must be finite and within ±1e30, got {value}")
            if self.low is not None and value < self.low:
                raise MergeError(f"parameter {self.name!r} must be ≥ {self.low}, got {value}")
            if self.high is not None and value > self.high:
                raise MergeError(f"parameter {self.name!r} must be ≤ {self.high}, got {value}")
        if self.kind is list and not all(math.isfinite(x) and abs(x) <= 1e30 for x in value):
            raise MergeError(f"parameter {self.name!r} must be finite and within ±1e30, got {value}")
        if self.choices is not None and value not in self.choices:
            raise MergeError(f"parameter {self.name!r} must be one of {list(self.choices)}, got {value!r}")
        return value


# Parameters named as in PEFT's add_weighted_adapter / merge_utils.
LAMBDA = lambda default: Param("lambda", default, "global scale λ applied to the merged delta")  # noqa: E731
WEIGHTS = Param("weights", None, "per-task weights w_i (comma-separated; default all 1)", kind=list)
DENSITY = lambda default: Param("density", default, "fraction of entries kept by trimming/dropping", low=0.0, high=1.0)  # noqa: E731
MAJORITY_SIGN = Param("majority_sign", "total", "sign election: 'total' (sum) or 'frequency' (count)",
                      kind=str, choices=("total", "frequency"))
SEED = Param("seed", 0, "seed of the random masks (same seed, same merge)", kind=int)
TRIM_SCOPE = Param("trim_scope", "module", "TIES trim per 'module' (PEFT) or over the whole 'model' (the TIES/KnOTS "
                   "reference code)", kind=str, choices=("module", "model"))


Kernel = Callable[[list[Union[Factors, None]], dict, torch.Generator], ModuleDelta]


@dataclass(frozen=True)
class MergeMethod:
    """A named, configured merge method (mergekit-style registry entry)."""

    name: str
    title: str
    paper: str
    description: str
    params: tuple[Param, ...]
    kernel: Kernel | None = None  # None for data-driven methods (run by tara_core.optimize)
    data_driven: bool = False
    exact_lowrank: bool = True  # the result is factored with rank ≤ Σ r_i
    fixed: dict = field(default_factory=dict)  # parameters pinned by this entry (e.g. inner="ties")
    preference_of: str | None = None  # a preference model φ(ρ) of this variant (tara_core.preference)
    trim_inputs: Callable | None = None  # what a TIES trim ranks per module (for trim_scope=model)

    def resolve(self, params: dict | None) -> dict:
        """Defaults overlaid with validated user parameters; unknown names are an error."""
        params = dict(params or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise MergeError(
                f"method {self.name!r} has no parameter(s) {unknown}; it takes {sorted(known) or 'none'}"
            )
        out = {p.name: p.default for p in self.params}
        for key, value in params.items():
            out[key] = known[key].coerce(value)
        out.update(self.fixed)
        return out


@dataclass
class MergeResult:
    """The merged ΔW per module (factored where possible), with what is needed to export and reproduce it."""

    method: str
    params: dict
    deltas: dict[str, ModuleDelta]
    adapter_names: list[str]
    adapter_hashes: list[str]
    weight_shapes: dict[str, tuple[int, ...]]
    fan_in_fan_out: dict[str, bool]
    coefficients: dict[str, torch.Tensor] = field(default_factory=dict)  # learned φ / λ, if any
    info: dict = field(default_factory=dict)  # timings, losses, notes

    @property
    def is_factored(self) -> bool:
        return all(isinstance(d, Factors) for d in self.deltas.values())

    def dense(self, module: str) -> torch.Tensor:
        d = self.deltas[module]
        return d.materialize() if isinstance(d, Factors) else d

    def max_rank(self) -> int:
        return max((d.rank for d in self.deltas.values() if isinstance(d, Factors)), default=0)


def task_weights(params: dict, n: int) -> list[float]:
    """The per-task weights w_i (all ones by default), validated against the number of adapters."""
    w = params.get("weights")
    if w is None:
        return [1.0] * n
    if len(w) != n:
        raise MergeError(f"'weights' has {len(w)} values but there are {n} adapters")
    return list(w)


def present(deltas: list[Factors | None]) -> list[Factors]:
    return [d for d in deltas if d is not None]


def dense_deltas(deltas: list[Factors | None], shape: tuple[int, int], rows: slice | None = None) -> torch.Tensor:
    """Stack the tasks' dense ΔW_i (or a block of rows of them) as (N, rows, d_in); absent tasks are zeros."""
    rows = rows or slice(0, shape[0])
    n_rows = len(range(*rows.indices(shape[0])))
    out = torch.zeros(len(deltas), n_rows, shape[1])
    for i, d in enumerate(deltas):
        if d is not None:
            out[i] = d.B[rows] @ d.A
    return out
