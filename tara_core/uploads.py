"""Safe intake of user-uploaded PEFT adapters (zip archives) into a private folder.

Each upload is a zip holding one adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``,
at the top level or in one sub-folder). Archives are checked before anything is written: total and
uncompressed size limits, no absolute paths, no ``..`` components, no symlinks; files land only inside
``dest``. The adapters are then validated by :func:`tara_core.adapters.load_adapter_set`.
"""
from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path, PurePosixPath

from .adapters import AdapterError, AdapterSet, load_adapter_set

__all__ = ["MAX_UPLOAD_BYTES", "MAX_UNPACKED_BYTES", "UploadError", "extract_adapter_zip", "load_uploaded_set"]

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_UNPACKED_BYTES = 1024 * 1024 * 1024


class UploadError(AdapterError):
    """An upload that is too large, not a zip, or tries to write outside its folder."""


def extract_adapter_zip(data: bytes, dest: Path, name: str, max_bytes: int = MAX_UPLOAD_BYTES,
                        max_unpacked: int = MAX_UNPACKED_BYTES) -> Path:
    """Unpack one uploaded adapter zip into ``dest/name``; returns the folder holding adapter_config.json."""
    if len(data) > max_bytes:
        raise UploadError(f"{name}: {len(data) / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB upload limit")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadError(f"{name}: not a zip archive (zip the adapter folder and upload the .zip)") from None
    infos = archive.infolist()
    if sum(i.file_size for i in infos) > max_unpacked:
        raise UploadError(f"{name}: unpacks to more than {max_unpacked / 1e6:.0f} MB")
    target = (Path(dest) / name).resolve()
    if target.exists():
        raise UploadError(f"{name}: an upload with this name already exists in this session")
    for info in infos:
        path = PurePosixPath(info.filename)
        if path.is_absolute() or ".." in path.parts or stat.S_ISLNK(info.external_attr >> 16):
            raise UploadError(f"{name}: refusing archive member {info.filename!r} (outside the upload folder)")
    target.mkdir(parents=True)
    for info in infos:
        out = (target / info.filename).resolve()
        if target not in out.parents and out != target:
            raise UploadError(f"{name}: refusing archive member {info.filename!r}")
        if info.is_dir():
            out.mkdir(parents=True, exist_ok=True)
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(out, "wb") as fh:
            fh.write(src.read())
    configs = sorted(target.rglob("adapter_config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise UploadError(f"{name}: no adapter_config.json in the archive")
    return configs[0].parent


def load_uploaded_set(folders: list[Path], names: list[str]) -> AdapterSet:
    """Validate the unpacked adapters together (same base shapes, LoRA only, finite values...)."""
    return load_adapter_set(folders, names=names)
