"""Matching adapter module names to the modules of the base model they will be merged into.

Adapters name modules relative to the model PEFT wrapped when they were trained. The KnOTS ViT-B/32
adapters, for instance, were trained on CLIP's vision transformer alone (``encoder.layers.0.self_attn.q_proj``)
while a full CLIP checkpoint names that module ``vision_model.encoder.layers.0.self_attn.q_proj`` — and also
has a text tower with an ``encoder.layers.0.self_attn.q_proj`` of its own (TARA.md §9 renames the keys by
hand). :func:`resolve_module_names` (names and shapes only; :func:`tara_core.adapters.canonicalize` applies
it to an adapter set) finds, for every adapter module, the one target module it belongs to:

* candidates are the targets whose name ends with the adapter's name (the adapter was trained on a sub-model)
  or whose name the adapter's name ends with (trained on a larger model that wrapped this one);
* a candidate must have the weight shape of the adapter's ΔW;
* an explicit ``prefix`` restricts the targets to one sub-model (``vision_model.``, ``visual.``) first;
* no candidate, or two that fit equally, is an error that names the module and the candidates — never a
  silent pick (the longest-common-name rule would merge a vision adapter into a same-shaped text tower).

PEFT's own wrapping names are kept: ``.base_layer`` (the out_proj of a LoRA'd ``nn.MultiheadAttention``)
is ignored for matching and kept in the result, and an MHA's LoRA matches its ``in_proj_weight``.
"""
from __future__ import annotations

__all__ = ["KeymapError", "wrapped_module", "resolve_module_names"]


class KeymapError(ValueError):
    """An adapter module that fits no base module, or several."""


def wrapped_module(module: str) -> str:
    """The base module an adapter module name refers to: PEFT's ``.base_layer`` wrapping (the out_proj of a
    LoRA'd ``nn.MultiheadAttention`` is ``attn.base_layer.out_proj``) dropped."""
    return module.replace(".base_layer", "")

_WEIGHT_SUFFIXES = (".weight", ".in_proj_weight")


def _targets_from_params(param_shapes: dict[str, tuple[int, ...]], prefix: str) -> dict[str, tuple[int, ...]]:
    """{module: weight shape} from parameter/checkpoint names (``<module>.weight``/``<module>.in_proj_weight``)."""
    out = {}
    for key, shape in param_shapes.items():
        if not key.startswith(prefix):
            continue
        for suffix in _WEIGHT_SUFFIXES:
            if key.endswith(suffix) and len(shape) >= 2:
                out[key[: -len(suffix)]] = tuple(shape)
    return out


def _fits(adapter_shape: tuple[int, ...], target_shape: tuple[int, ...], fan_in_fan_out: bool) -> bool:
    want = (adapter_shape[1], adapter_shape[0], *adapter_shape[2:]) if fan_in_fan_out else adapter_shape
    return tuple(want) == tuple(target_shape)


def resolve_module_names(
    modules: dict[str, tuple[int, ...]],
    param_shapes: dict[str, tuple[int, ...]],
    prefix: str = "",
    fan_in_fan_out: dict[str, bool] | None = None,
) -> dict[str, str]:
    """{adapter module: module name in the target model} (see the module docstring for the rule).

    Args:
        modules: adapter module names → ΔW weight shapes (``AdapterSet.weight_shapes``).
        param_shapes: the target's parameter or checkpoint names → shapes (``model.state_dict()`` shapes,
            :class:`~tara_core.base.BaseWeights` shapes).
        prefix: only targets under this prefix are candidates (e.g. ``vision_model.``).
        fan_in_fan_out: per module, whether the base stores the weight transposed (GPT-2 ``Conv1D``).
    """
    targets = _targets_from_params(param_shapes, prefix)
    if not targets:
        raise KeymapError(f"the base model has no weights under {prefix!r} an adapter could target")
    fifo = fan_in_fan_out or {}

    def named(stem: str) -> list[str]:
        return [t for t in targets if t == stem or t.endswith("." + stem) or stem.endswith("." + t)]

    if modules and not any(named(wrapped_module(m)) for m in modules):
        example = next(iter(modules))
        raise KeymapError(f"none of the adapters' {len(modules)} modules exist in the base model"
                           + (f" under {prefix!r}" if prefix else "")
                           + f" (e.g. {example}); is it an adapter for a different base?")
    mapping: dict[str, str] = {}
    for module, shape in modules.items():
        stem = wrapped_module(module)
        if stem in targets:  # exact name: nothing to resolve
            if not _fits(shape, targets[stem], fifo.get(module, False)):
                raise KeymapError(f"module {module}: adapter delta has shape {tuple(shape)} but the base weight "
                                   f"is {targets[stem]}")
            mapping[module] = module
            continue
        candidates = named(stem)
        fitting = [t for t in candidates if _fits(shape, targets[t], fifo.get(module, False))]
        if len(fitting) == 1:
            target = fitting[0]
            # keep PEFT's wrapping (".base_layer.") in the new name: rewrite only the differing prefix
            if target.endswith("." + stem):
                mapping[module] = target[: -len(stem)] + module
            else:
                mapping[module] = module[len(stem) - len(target):]
            continue
        if not candidates:
            raise KeymapError(f"module {module}: no module of that name in the base model"
                               + (f" under {prefix!r}" if prefix else "") + " (is this adapter for another base?)")
        if not fitting:
            raise KeymapError(f"module {module}: adapter delta has shape {tuple(shape)} but the base's "
                               f"{', '.join(candidates[:3])} {'is' if len(candidates) == 1 else 'are'} "
                               f"{', '.join(str(targets[t]) for t in candidates[:3])}")
        raise KeymapError(f"module {module} matches several base modules of the same shape "
                           f"({', '.join(sorted(fitting)[:4])}): give the sub-model prefix to use "
                           "(e.g. module_prefix 'vision_model.')")
    inverse: dict[str, str] = {}
    for module, target in mapping.items():
        if target in inverse:
            raise KeymapError(f"modules {inverse[target]} and {module} both map to {target}")
        inverse[target] = module
    return mapping
