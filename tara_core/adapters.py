"""Loading N PEFT LoRA adapters for one base model into an :class:`AdapterSet`.

Input contract (DESIGN.md §4): a PEFT adapter folder with ``adapter_config.json`` and
``adapter_model.safetensors`` (read tensor by tensor with ``safetensors.safe_open``), or a legacy
``adapter_model.bin`` read only with ``torch.load(weights_only=True)``. Keys follow PEFT's checkpoint
layout ``base_model.model.<module>.lora_{A,B}.weight``; non-LoRA tensors are ``modules_to_save``.

Per module the set keeps the factors (B_i, A_i) and the scale s_i (α/r, or α/√r with rsLoRA, with
``rank_pattern``/``alpha_pattern`` resolved as PEFT does), so ΔW_i = s_i B_i A_i (METHODS.md notation).
Everything that cannot be merged as LoRA is refused with an :class:`AdapterError` naming the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .cache import cache_root
from .keymap import KeymapError, resolve_module_names, wrapped_module
from .lowrank import Factors
from .safe_io import safe_name, sanitize_name

__all__ = ["AdapterError", "LoraModule", "Adapter", "AdapterSet", "load_adapter", "load_adapter_set", "canonicalize",
           "rename_modules", "wrapped_module"]

CONFIG_NAME = "adapter_config.json"
SAFETENSORS_NAME = "adapter_model.safetensors"
BIN_NAME = "adapter_model.bin"
PEFT_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[^.]+)?\.weight$")
_UNSUPPORTED_LORA = ("lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector")


class AdapterError(ValueError):
    """An adapter (or a set of adapters) that cannot be loaded or merged, with the reason."""


@dataclass(frozen=True)
class LoraModule:
    """One adapted module of one adapter: ΔW = scale · B @ A (2-D; convolution kernels flattened)."""

    B: torch.Tensor  # (d_out, r)
    A: torch.Tensor  # (r, d_in)
    scale: float
    weight_shape: tuple[int, ...]  # the base weight's shape ΔW is reshaped to (e.g. conv kernels)

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.B.shape[0], self.A.shape[1])

    def factors(self, weight: float = 1.0) -> Factors:
        """ΔW as factors with the scale (and an optional task weight) folded into A."""
        return Factors(self.B, self.A * (self.scale * weight))


@dataclass
class Adapter:
    """One PEFT LoRA adapter: its config, per-module factors and any ``modules_to_save`` tensors."""

    name: str
    path: Path
    config: dict
    modules: dict[str, LoraModule]
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    sha256: str = ""

    @property
    def ranks(self) -> dict[str, int]:
        return {m: lm.rank for m, lm in self.modules.items()}

    @property
    def fan_in_fan_out(self) -> bool:
        return bool(self.config.get("fan_in_fan_out", False))

    @property
    def modules_to_save(self) -> list[str]:
        return list(self.config.get("modules_to_save") or [])


def _pattern_value(patterns: dict, module: str, default):
    """PEFT's own ``rank_pattern``/``alpha_pattern`` resolution (``peft.utils.other.get_pattern_key``)."""
    if not patterns:
        return default
    from peft.utils.other import get_pattern_key

    return patterns.get(get_pattern_key(list(patterns), module), default)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_config(folder: Path) -> dict:
    cfg_path = folder / CONFIG_NAME
    if not cfg_path.is_file():
        raise AdapterError(f"{folder}: no {CONFIG_NAME} (is this a PEFT adapter folder?)")
    data = cfg_path.read_bytes()
    try:
        config = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AdapterError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise AdapterError(f"{cfg_path}: expected a JSON object")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise AdapterError(f"{folder}: peft_type {peft_type!r} is not LoRA; only LoRA adapters can be merged")
    if config.get("use_dora"):
        raise AdapterError(
            f"{folder}: DoRA adapter (use_dora=true): its magnitude vectors are not a low-rank delta "
            "and cannot be merged as LoRA"
        )
    def positive(value, integer: bool) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if integer and not float(value).is_integer():
            return False
        return math.isfinite(value) and 0 < value < 2 ** 31

    for key, integer in (("r", True), ("lora_alpha", False)):
        if key in config and not positive(config[key], integer):
            kind = "a positive integer" if integer else "a positive finite number"
            raise AdapterError(f"{cfg_path}: {key} must be {kind}, got {config[key]!r}")
    for key, integer in (("rank_pattern", True), ("alpha_pattern", False)):
        patterns = config.get(key) or {}
        if not isinstance(patterns, dict):
            raise AdapterError(f"{cfg_path}: {key} must be an object of module pattern → value")
        for pattern, value in patterns.items():
            if not positive(value, integer):
                kind = "positive integers" if integer else "positive finite numbers"
                raise AdapterError(f"{cfg_path}: {key}[{pattern!r}] must be {kind}, got {value!r}")
    return _as_peft_reads_it(folder, data)


def _as_peft_reads_it(folder: Path, data: bytes) -> dict:
    """The config as PEFT itself reads it (``PeftConfig.from_pretrained``: its defaults, e.g. ``lora_alpha`` = 8
    when absent, and its field set; keys a newer PEFT wrote are ignored, as PEFT does).

    Importing PEFT takes seconds (it imports much of transformers), so PEFT's reading of a config is kept in
    the cache (:func:`tara_core.cache.cache_root` ``/peft-configs``) under the SHA-256 of the config's bytes and
    the installed PEFT version (``data``: the config file's bytes): the same file under the same PEFT is read
    the same way."""
    from importlib.metadata import version

    from .safe_io import atomic_file_write

    key = hashlib.sha256(data + f"\0peft=={version('peft')}".encode()).hexdigest()
    memo = cache_root() / "peft-configs" / f"{key}.json"
    try:
        cached = json.loads(memo.read_text())
        if isinstance(cached, dict) and cached.get("peft_type") == "LORA":
            return cached
    except (OSError, ValueError):
        pass
    out = _read_with_peft(folder)
    try:
        text = json.dumps(out, sort_keys=True)
    except (TypeError, ValueError):
        return out  # a field JSON cannot hold: read by PEFT every time
    try:
        atomic_file_write(memo, text.encode())
    except OSError:
        pass  # a read-only cache only costs the import next time
    return json.loads(text)  # the same values whether read from the cache or not


def _read_with_peft(folder: Path) -> dict:
    import warnings

    from peft import LoraConfig, PeftConfig

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = PeftConfig.from_pretrained(str(folder))
    except (TypeError, ValueError, KeyError) as exc:
        raise AdapterError(f"{folder / CONFIG_NAME}: PEFT cannot read it ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(config, LoraConfig):
        raise AdapterError(f"{folder}: peft_type {config.peft_type} is not LoRA; only LoRA adapters can be merged")
    out = config.to_dict()
    if isinstance(out.get("target_modules"), (set, frozenset)):
        out["target_modules"] = sorted(out["target_modules"])
    out["peft_type"] = str(getattr(config.peft_type, "value", config.peft_type))
    out["task_type"] = None if config.task_type is None else str(getattr(config.task_type, "value", config.task_type))
    return out


def weight_file(folder: Path) -> Path:
    """The adapter's weight file: ``adapter_model.safetensors``, else the legacy ``adapter_model.bin``."""
    st_path = folder / SAFETENSORS_NAME
    return st_path if st_path.is_file() else folder / BIN_NAME


SPARSE_MIN_BYTES = 64 * 2**20  # files this large that occupy under a quarter of it on disk are refused


@dataclass(frozen=True)
class ShapeBounds:
    """What a base allows an adapter tensor to declare: no more elements than its largest weight (a LoRA
    factor or a saved head is never larger). Exact shapes are checked after loading, module by module."""

    max_numel: int

    @classmethod
    def of(cls, param_shapes: dict[str, tuple[int, ...]]) -> "ShapeBounds":
        return cls(max((math.prod(s) for s in param_shapes.values()), default=0))


def declared_shapes(st_path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes a safetensors file's header declares (no tensor data is read)."""
    try:
        with safe_open(str(st_path), framework="pt") as fh:
            return {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise AdapterError(f"{st_path}: corrupt or truncated safetensors file ({exc})") from None


def check_declared_shapes(st_path: Path, config: dict, key_prefix: str | None, bounds: ShapeBounds | None) -> None:
    """Refuse, from the header alone, tensors an adapter cannot hold: LoRA factors whose rank is not the
    config's, tensors larger than the base's largest weight (given the base), and sparse files — a few KB
    of header can declare gigabytes, which must not be read to find out."""
    for key, shape in declared_shapes(st_path).items():
        match = _LORA_KEY.match(_module_name(key, key_prefix))
        if match and len(shape) >= 2:
            r = _pattern_value(config.get("rank_pattern") or {}, match["module"], config["r"])
            rank = shape[0] if match["which"] == "A" else shape[1]
            if rank != r:
                raise AdapterError(f"{st_path}: {key} declares shape {shape}: rank {rank}, but the config says r={r}")
        if bounds is not None and math.prod(shape) > bounds.max_numel:
            raise AdapterError(f"{st_path}: {key} declares shape {shape}, larger than any weight of the base")
    stat = st_path.stat()
    size, allocated = stat.st_size, stat.st_blocks * 512
    if size > SPARSE_MIN_BYTES and allocated * 4 < size:
        raise AdapterError(f"{st_path}: declares {size / 2**20:.0f} MB of tensors but occupies "
                           f"{allocated / 2**20:.1f} MB on disk (a sparse file); refused")


def _iter_tensors(folder: Path):
    """Yield (key, tensor) one at a time from the adapter's weight file."""
    st_path, bin_path = folder / SAFETENSORS_NAME, folder / BIN_NAME
    if st_path.is_file():
        try:
            with safe_open(str(st_path), framework="pt") as fh:
                for key in fh.keys():
                    yield key, fh.get_tensor(key)
        except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
            raise AdapterError(f"{st_path}: corrupt or truncated safetensors file ({exc})") from None
    elif bin_path.is_file():
        try:
            state = torch.load(bin_path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # a legacy (non-zip) checkpoint cannot be memory-mapped
            state = _load_bin(bin_path, mmap=False)
        except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, OSError):
            state = _load_bin(bin_path, mmap=False)
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise AdapterError(f"{bin_path}: expected a dict of tensors")
        for key, tensor in state.items():
            # a pickle can declare a huge tensor over a tiny storage (stride 0): refuse before touching it
            if tensor.numel() * tensor.element_size() > tensor.untyped_storage().nbytes() or not tensor.is_contiguous():
                raise AdapterError(f"{bin_path}: {key} declares shape {tuple(tensor.shape)} over "
                                   f"{tensor.untyped_storage().nbytes()} stored bytes (expanded or overlapping); refused")
        yield from state.items()
    else:
        raise AdapterError(f"{folder}: no {SAFETENSORS_NAME} or {BIN_NAME}")


def _load_bin(path: Path, mmap: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "Weights only load failed" in first or "weights_only" in first:
            first = "it contains Python objects other than tensors"
        raise AdapterError(f"{path.name} in {path.parent}: not a plain tensor checkpoint ({first[:120]}); "
                           "only weights_only=True checkpoints are read") from None


def _module_name(key: str, key_prefix: str | None) -> str:
    if key_prefix and key.startswith(key_prefix):
        key = key[len(key_prefix):]
    elif key.startswith(PEFT_PREFIX):
        key = key[len(PEFT_PREFIX):]
    return key


def load_adapter(path: str | Path, name: str | None = None, key_prefix: str | None = None,
                 bounds: ShapeBounds | None = None) -> Adapter:
    """Load and validate one PEFT LoRA adapter folder (factors upcast to fp32).

    Args:
        path: the adapter folder.
        name: display/task name (default: the folder name).
        key_prefix: prefix to strip from keys instead of PEFT's ``base_model.model.``.
        bounds: the base's dimensions (:class:`ShapeBounds`), checked against the declared shapes before
            any tensor data is read.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise AdapterError(f"{folder}: not a directory")
    config = _read_config(folder)
    raw: dict[str, dict[str, torch.Tensor]] = {}
    extra: dict[str, torch.Tensor] = {}
    weights = weight_file(folder)
    if weights.suffix == ".safetensors" and weights.is_file():
        check_declared_shapes(weights, config, key_prefix, bounds)
    for key, tensor in _iter_tensors(folder):
        if any(tag in key for tag in _UNSUPPORTED_LORA):
            kind = "DoRA magnitude vector" if "magnitude" in key else "LoRA on an embedding layer"
            raise AdapterError(f"{weights}: {key}: {kind} is not supported for merging")
        if not torch.is_floating_point(tensor):
            raise AdapterError(f"{weights}: {key} has non-float dtype {tensor.dtype}")
        if not torch.isfinite(tensor).all():
            raise AdapterError(f"{weights}: {key} contains NaN or Inf values")
        match = _LORA_KEY.match(_module_name(key, key_prefix))
        if match:
            factor = tensor.float()
            if not torch.isfinite(factor).all():  # float64 values beyond float32's range
                raise AdapterError(f"{weights}: {key} has values too large for float32")
            raw.setdefault(match["module"], {})[match["which"]] = factor
        else:
            extra[_module_name(key, key_prefix)] = tensor
    if not raw:
        raise AdapterError(f"{weights}: no LoRA tensors (keys '*.lora_A.weight' / '*.lora_B.weight') found")

    r_default, alpha_default = config["r"], config["lora_alpha"]  # PEFT's values (its defaults if absent)
    modules: dict[str, LoraModule] = {}
    for module, pair in sorted(raw.items()):
        if set(pair) != {"A", "B"}:
            missing = ({"A", "B"} - set(pair)).pop()
            raise AdapterError(f"{weights}: module {module} has no lora_{missing} weight")
        A, B = pair["A"], pair["B"]
        weight_shape: tuple[int, ...]
        if A.ndim == 4 and B.ndim == 4:  # Conv2d LoRA: A (r, in, kh, kw), B (out, r, 1, 1)
            weight_shape = (B.shape[0], *A.shape[1:])
            A, B = A.reshape(A.shape[0], -1), B.reshape(B.shape[0], B.shape[1])
        elif A.ndim == 2 and B.ndim == 2:
            weight_shape = (B.shape[0], A.shape[1])
        else:
            raise AdapterError(f"{weights}: {module}: unsupported LoRA weight shapes {tuple(A.shape)}, {tuple(B.shape)}")
        r = A.shape[0]
        if B.shape[1] != r:
            raise AdapterError(f"{weights}: {module}: lora_A has rank {r} but lora_B has {B.shape[1]}")
        r_config = _pattern_value(config.get("rank_pattern") or {}, module, r_default)
        if r_config != r:
            raise AdapterError(f"{weights}: {module}: weights have rank {r} but the config says r={r_config}")
        alpha = _pattern_value(config.get("alpha_pattern") or {}, module, alpha_default)
        scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        modules[module] = LoraModule(B=B, A=A, scale=float(scale), weight_shape=weight_shape)
    return Adapter(
        name=name or sanitize_name(folder.resolve().name),
        path=folder,
        config=config,
        modules=modules,
        extra_tensors=extra,
        sha256=file_sha256(weights),
    )


@dataclass
class AdapterSet:
    """N LoRA adapters on one base: the union of their modules, each with per-adapter factors.

    A module that an adapter does not adapt counts as a zero delta for that adapter (``get`` is None).
    """

    adapters: list[Adapter]
    module_names: list[str]
    shapes: dict[str, tuple[int, int]]
    weight_shapes: dict[str, tuple[int, ...]]
    fan_in_fan_out: dict[str, bool]

    def __len__(self) -> int:
        return len(self.adapters)

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.adapters]

    def get(self, i: int, module: str) -> LoraModule | None:
        return self.adapters[i].modules.get(module)

    def factors(self, module: str, weights: list[float] | None = None) -> list[Factors | None]:
        """Per adapter, ΔW_i = s_i B_i A_i (times weights[i]) as factors, None where the module is absent."""
        w = weights or [1.0] * len(self)
        out: list[Factors | None] = []
        for i in range(len(self)):
            lm = self.get(i, module)
            out.append(None if lm is None else lm.factors(w[i]))
        return out

    def subset(self, indices: list[int]) -> "AdapterSet":
        """The adapters at ``indices`` (e.g. one adapter alone), with their modules only."""
        return build_adapter_set([self.adapters[i] for i in indices])

    def total_rank(self, module: str) -> int:
        return sum(lm.rank for a in self.adapters if (lm := a.modules.get(module)) is not None)

    def summary(self) -> list[dict]:
        """One row per adapter: name, ranks, alphas/scales, modules, modules_to_save, ‖ΔW‖_F."""
        from .lowrank import frobenius_norm

        rows = []
        for a in self.adapters:
            ranks = sorted(set(a.ranks.values()))
            norms = [frobenius_norm(lm.factors()) for lm in a.modules.values()]
            rows.append({
                "adapter": a.name,
                "ranks": ",".join(map(str, ranks)),
                "lora_alpha": a.config.get("lora_alpha"),
                "rslora": bool(a.config.get("use_rslora")),
                "modules": len(a.modules),
                "modules_to_save": ",".join(a.modules_to_save),
                "delta_norm": math.sqrt(sum(n * n for n in norms)),
                "sha256": a.sha256[:12],
            })
        return rows


def check_same_base(adapters: list[Adapter]) -> None:
    """Refuse adapters whose configs name different base models (``base_model_name_or_path``, where given):
    their module names may coincide while the models differ (a GPT-2 and a LLaMA adapter)."""
    named = {a.name: str(a.config.get("base_model_name_or_path")).rstrip("/") for a in adapters
             if a.config.get("base_model_name_or_path")}
    if len(set(named.values())) > 1:
        pairs = ", ".join(f"{k}: {v}" for k, v in list(named.items())[:3])
        raise AdapterError(f"the adapters name different base models ({pairs}); merge adapters of one base")


def build_adapter_set(adapters: list[Adapter], base_shapes: dict[str, tuple[int, ...]] | None = None) -> AdapterSet:
    """Validate that ``adapters`` can be merged together (and onto a base, when its shapes are given)."""
    if not adapters:
        raise AdapterError("no adapters given: merging needs at least one adapter")
    seen: dict[str, str] = {}
    for a in adapters:
        if a.sha256 in seen:
            raise AdapterError(f"duplicate adapters: {a.path} has the same weights as {seen[a.sha256]}")
        seen[a.sha256] = str(a.path)
    names = [a.name for a in adapters]
    if len(set(names)) != len(names):
        raise AdapterError(f"adapter names must be unique, got {names}")
    check_same_base(adapters)

    shapes: dict[str, tuple[int, int]] = {}
    weight_shapes: dict[str, tuple[int, ...]] = {}
    fifo: dict[str, bool] = {}
    owner: dict[str, str] = {}
    for a in adapters:
        for module, lm in a.modules.items():
            if module in shapes:
                if shapes[module] != lm.shape or weight_shapes[module] != lm.weight_shape:
                    raise AdapterError(
                        f"adapters are for different base models: module {module} is {lm.weight_shape} in "
                        f"{a.name} but {weight_shapes[module]} in {owner[module]}"
                    )
                if fifo[module] != a.fan_in_fan_out:
                    raise AdapterError(f"module {module}: fan_in_fan_out differs between {owner[module]} and {a.name}")
            else:
                shapes[module], weight_shapes[module] = lm.shape, lm.weight_shape
                fifo[module], owner[module] = a.fan_in_fan_out, a.name

    if base_shapes is not None:
        for a in adapters:
            unknown = [m for m in a.modules if m not in base_shapes]
            if len(unknown) == len(a.modules):
                raise AdapterError(
                    f"{a.path}: none of its {len(a.modules)} modules exist in the base model "
                    f"(e.g. {unknown[0]}); is it an adapter for a different base?"
                )
            if unknown:
                raise AdapterError(f"{a.path}: modules not found in the base model: {unknown[:5]}")
        for module, wshape in weight_shapes.items():
            base = tuple(base_shapes[module])
            expect = wshape if not fifo[module] else (wshape[1], wshape[0], *wshape[2:])
            if base != tuple(expect):
                raise AdapterError(
                    f"module {module}: adapter delta has shape {tuple(expect)} but the base weight is {base}"
                )
    return AdapterSet(
        adapters=adapters,
        module_names=sorted(shapes),
        shapes=shapes,
        weight_shapes=weight_shapes,
        fan_in_fan_out=fifo,
    )


def load_adapter_set(
    paths: list[str | Path],
    names: list[str] | None = None,
    base_shapes: dict[str, tuple[int, ...]] | None = None,
    key_prefix: str | None = None,
    base=None,
    module_prefix: str = "",
) -> AdapterSet:
    """Load and validate N adapter folders (see :func:`load_adapter` and :func:`build_adapter_set`).

    ``base`` (a :class:`tara_core.base.BaseWeights`) renames every module to the base's own name for it
    (:func:`tara_core.keymap.canonicalize`, restricted to ``module_prefix`` such as ``vision_model.``) and
    so validates it against the base's weight shapes; explicit ``base_shapes`` only validate.
    """
    if not paths:
        raise AdapterError("no adapters given: merging needs at least one adapter")
    if names is not None and len(names) != len(paths):
        raise AdapterError(f"{len(names)} names for {len(paths)} adapters")
    if names is not None:
        for name in names:  # names become file names (modules_to_save/<name>.safetensors)
            try:
                safe_name(name, "adapter name")
            except ValueError as exc:
                raise AdapterError(str(exc)) from None
    shapes = base.param_shapes if base is not None and base_shapes is None else base_shapes
    bounds = ShapeBounds.of(shapes) if shapes else None
    adapters = [load_adapter(p, None if names is None else names[i], key_prefix, bounds) for i, p in enumerate(paths)]
    if base is not None and base_shapes is None:
        # name every module as the base does (resolved by name and shape), which also validates the shapes
        return canonicalize(build_adapter_set(adapters), base.param_shapes, module_prefix)
    return build_adapter_set(adapters, base_shapes)


def rename_modules(adapters: AdapterSet, mapping: dict[str, str]) -> AdapterSet:
    """The same adapters with their modules renamed (factors shared, not copied)."""
    if all(mapping.get(m, m) == m for m in adapters.module_names):
        return adapters
    # the short target_modules of the config ("q_proj") could now also match another tower's modules:
    # drop them, so an export names the renamed modules exactly
    renamed = [dataclasses.replace(a, modules={mapping.get(m, m): lm for m, lm in a.modules.items()},
                                   config={**a.config, "target_modules": None})
               for a in adapters.adapters]
    return build_adapter_set(renamed)


def canonicalize(adapters: AdapterSet, param_shapes: dict[str, tuple[int, ...]], prefix: str = "") -> AdapterSet:
    """Adapters renamed to the target model's module names (:func:`tara_core.keymap.resolve_module_names`)."""
    try:
        mapping = resolve_module_names(adapters.weight_shapes, param_shapes, prefix, adapters.fan_in_fan_out)
    except KeymapError as exc:
        raise AdapterError(str(exc)) from None
    return rename_modules(adapters, mapping)
