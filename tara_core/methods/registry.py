"""The registry of named, configured merge methods (one entry per name; several share a kernel).

Each entry carries its defaults and its paper, and ``python -m tara_core methods`` prints them.
Data-driven methods (AdaMerging, TARA) are registered with ``data_driven=True`` and run by
``tara_core.optimize``; their kernels here are None.
"""
from __future__ import annotations

from .base import DENSITY, LAMBDA, MAJORITY_SIGN, SEED, TRIM_SCOPE, WEIGHTS, MergeError, MergeMethod, Param
from .dare import dare_linear, dare_ties
from .iso import iso_c, iso_cts
from .knots import knots, knots_trim_inputs
from .learned import PreferenceConfig, config_params
from .lora_lego import lora_lego
from .task_arithmetic import task_arithmetic
from .ties import ties, ties_trim_inputs
from .tsv import tsv

_TIES_PARAMS = (LAMBDA(1.0), DENSITY(0.2), MAJORITY_SIGN, WEIGHTS, TRIM_SCOPE)
_DARE_PARAMS = (DENSITY(0.5), SEED, WEIGHTS)
KNOTS_PAPER = "Stoica et al., ICLR 2025, https://arxiv.org/abs/2410.19735"

METHODS: dict[str, MergeMethod] = {}


def register(method: MergeMethod) -> MergeMethod:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} registered twice")
    METHODS[method.name] = method
    return method


register(MergeMethod(
    "ta", "Task Arithmetic", "Ilharco et al., ICLR 2023, https://arxiv.org/abs/2212.04089",
    "λ Σ w_i ΔW_i (exact, factored)", (LAMBDA(0.4), WEIGHTS), task_arithmetic))
register(MergeMethod(
    "cat", "Concatenation", "PEFT add_weighted_adapter(combination_type='cat')",
    "Σ w_i ΔW_i as one LoRA of rank Σ r_i (exact)", (WEIGHTS,), task_arithmetic, fixed={"lambda": 1.0}))
register(MergeMethod(
    "ties", "TIES", "Yadav et al., NeurIPS 2023, https://arxiv.org/abs/2306.01708",
    "trim to top-density magnitudes, elect sign, disjoint mean, × λ (dense)", _TIES_PARAMS, ties,
    exact_lowrank=False, trim_inputs=ties_trim_inputs))
register(MergeMethod(
    "dare-linear", "DARE (linear)", "Yu et al., ICML 2024, https://arxiv.org/abs/2311.03099",
    "random drop (keep density), rescale 1/density, λ Σ w_i (dense)", (LAMBDA(0.4), *_DARE_PARAMS),
    dare_linear, exact_lowrank=False))
register(MergeMethod(
    "dare-ties", "DARE-TIES", "Yu et al., ICML 2024, https://arxiv.org/abs/2311.03099",
    "random drop + rescale, then TIES sign election and disjoint mean (dense)",
    (LAMBDA(1.0), *_DARE_PARAMS, MAJORITY_SIGN), dare_ties, exact_lowrank=False))
register(MergeMethod(
    "knots-ta", "KnOTS-TA", KNOTS_PAPER, "TA on the SVD-aligned task blocks Σ V_iᵀ, ΔW = U M",
    (LAMBDA(0.4), WEIGHTS), knots, fixed={"inner": "ta"}))
register(MergeMethod(
    "knots-ties", "KnOTS-TIES", KNOTS_PAPER, "TIES on the SVD-aligned task blocks Σ V_iᵀ, ΔW = U M",
    _TIES_PARAMS, knots, fixed={"inner": "ties"}, trim_inputs=knots_trim_inputs))
register(MergeMethod(
    "knots-dare", "KnOTS-DARE", KNOTS_PAPER, "DARE-TIES on the SVD-aligned task blocks Σ V_iᵀ, ΔW = U M",
    (LAMBDA(1.0), *_DARE_PARAMS, MAJORITY_SIGN), knots, fixed={"inner": "dare"}))
register(MergeMethod(
    "tsv", "TSV-M", "Gargiulo et al., CVPR 2025, https://arxiv.org/abs/2412.00081",
    "per-task top singular vectors, orthogonalized U and V (polar), × λ",
    (LAMBDA(1.0), WEIGHTS,
     Param("sv_fraction", None, "fraction of each task's components kept (default 1/N)", low=0.0, high=1.0),
     Param("sv_basis", "rank", "what the fraction is of: 'rank' (r_i) or 'dim' (min(d_out, d_in))",
           kind=str, choices=("rank", "dim"))), tsv))
register(MergeMethod(
    "iso-c", "Iso-C", "Marczak et al., ICML 2025, https://arxiv.org/abs/2502.04959",
    "SVD of Σ w_i ΔW_i with its spectrum flattened to the mean, × λ", (LAMBDA(1.0), WEIGHTS), iso_c))
register(MergeMethod(
    "iso-cts", "Iso-CTS", "Marczak et al., ICML 2025, https://arxiv.org/abs/2502.04959",
    "common + task-specific subspaces, orthogonalized, isotropic spectrum, × λ",
    (LAMBDA(1.0), WEIGHTS,
     Param("common_fraction", 0.8, "share of the rank given to the common subspace", low=0.0, high=1.0)),
    iso_cts))
register(MergeMethod(
    "lora-lego", "LoRA-LEGO", "Zhao et al., ICLR 2025, https://arxiv.org/abs/2409.16167",
    "k-means over rank-1 units, centroids as a rank-k LoRA, norm re-weighting, × λ",
    (LAMBDA(1.0), WEIGHTS, SEED,
     Param("clusters", 0, "number of clusters k (0: max r_i)", kind=int, low=0)), lora_lego))


_LEARNED = config_params()
register(MergeMethod(
    "adamerging-task", "AdaMerging (task-wise)", "Yang et al., ICLR 2024, https://arxiv.org/abs/2310.02575",
    "one λ_i per task for the whole model, learned by entropy minimization on unlabeled data",
    _LEARNED, data_driven=True))
register(MergeMethod(
    "adamerging-layer", "AdaMerging (layer-wise)", "Yang et al., ICLR 2024, https://arxiv.org/abs/2310.02575",
    "one λ_i per task per module, learned by entropy minimization on unlabeled data", _LEARNED, data_driven=True))
register(MergeMethod(
    "tara-a", "TARA-A", "Jeong, Lee & Yoon, CVPR 2026, https://arxiv.org/abs/2603.26299",
    "one φ per rank-1 LoRA direction of every adapter, learned under preference ρ", _LEARNED, data_driven=True))
register(MergeMethod(
    "tara-b", "TARA-B", "Jeong, Lee & Yoon, CVPR 2026, https://arxiv.org/abs/2603.26299",
    "one φ per (task, shared singular direction) of the concatenated adapters, learned under preference ρ",
    _LEARNED, data_driven=True))

_PREFERENCE = config_params(PreferenceConfig)
register(MergeMethod(
    "tara-a-pareto", "TARA-A preference model", "Jeong, Lee & Yoon, CVPR 2026 + Pareto set learning (Navon et al., "
    "ICLR 2021, https://arxiv.org/abs/2010.04104)",
    "TARA-A's φ as a function φ(ρ) of the preference, fitted once over the simplex; any ρ in milliseconds",
    _PREFERENCE, data_driven=True, preference_of="tara-a"))
register(MergeMethod(
    "tara-b-pareto", "TARA-B preference model", "Jeong, Lee & Yoon, CVPR 2026 + Pareto set learning (Navon et al., "
    "ICLR 2021, https://arxiv.org/abs/2010.04104)",
    "TARA-B's φ as a function φ(ρ) of the preference, fitted once over the simplex; any ρ in milliseconds",
    _PREFERENCE, data_driven=True, preference_of="tara-b"))


def get_method(name: str) -> MergeMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise MergeError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}") from None
