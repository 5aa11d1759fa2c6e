"""Safe intake of user-uploaded PEFT adapters (zip archives) into a private folder.

Each upload is a zip holding one adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``, at the
top level or in one sub-folder). Everything is checked from the archive's directory **before anything is
written**: the upload size, the number of members, the declared unpacked size and each member's compression
ratio (zip bombs), encrypted members, compression methods this Python cannot read, absolute paths, ``..``,
``.``/empty names, symlinks, a name used both as a file and as a folder. Members are then unpacked into a
hidden temporary folder — a CRC error or a member longer than declared stops it — which becomes
``dest/name`` only when all of it was read; on any refusal nothing is left. The adapters are then validated by
:func:`tara_core.adapters.load_adapter_set`.

:class:`UploadArea` owns the folders of one server: one sub-folder per browser session, removed when the
session ends (its holder is garbage-collected), and leftovers of servers that are gone removed at start.
"""
from __future__ import annotations

import io
import os
import shutil
import stat
import tempfile
import weakref
import zipfile
from pathlib import Path, PurePosixPath

from .adapters import AdapterError, AdapterSet, load_adapter_set
from .safe_io import pid_alive, safe_name, sanitize_name

__all__ = ["MAX_UPLOAD_BYTES", "MAX_UNPACKED_BYTES", "MAX_MEMBERS", "MAX_RATIO", "UploadError",
           "extract_adapter_zip", "load_uploaded_set", "upload_name", "SessionHolder", "UploadArea"]

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
MAX_MEMBERS = 64  # an adapter folder has 2–4 files (config, weights, README, modules_to_save)
MAX_RATIO = 50  # unpacked / packed per member: safetensors of floats compress ~1.1×; bombs ~1000×
_READABLE = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


class UploadError(AdapterError):
    """An upload that is too large, not a zip, or tries to write outside its folder."""


def _check_members(name: str, infos: list[zipfile.ZipInfo], max_unpacked: int) -> None:
    if len(infos) > MAX_MEMBERS:
        raise UploadError(f"{name}: {len(infos)} members in the archive (at most {MAX_MEMBERS}: one adapter folder)")
    if sum(i.file_size for i in infos) > max_unpacked:
        raise UploadError(f"{name}: unpacks to more than {max_unpacked / 1e6:.0f} MB")
    files, dirs = set(), set()
    for info in infos:
        shown = info.filename if len(info.filename) <= 60 else info.filename[:57] + "..."
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or stat.S_ISLNK(info.external_attr >> 16):
            raise UploadError(f"{name}: refusing archive member {shown!r} (outside the upload folder)")
        if not path.parts or any(p in (".", "") for p in info.filename.rstrip("/").split("/")):
            raise UploadError(f"{name}: refusing archive member {shown!r} (an empty or '.' name)")
        if info.flag_bits & 0x1:
            raise UploadError(f"{name}: archive member {shown!r} is encrypted")
        if info.compress_type not in _READABLE:
            raise UploadError(f"{name}: archive member {shown!r} uses an unsupported compression method "
                              f"({info.compress_type})")
        if info.file_size > 1_000_000 and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise UploadError(f"{name}: archive member {shown!r} expands {info.file_size / max(info.compress_size, 1):.0f}× "
                              "(a zip bomb?)")
        (dirs if info.is_dir() else files).add(path)
        dirs.update(path.parents)
    clash = files & dirs
    if clash:
        raise UploadError(f"{name}: {str(sorted(clash)[0])!r} is both a file and a folder in the archive")


def extract_adapter_zip(data: bytes, dest: Path, name: str, max_bytes: int = MAX_UPLOAD_BYTES,
                        max_unpacked: int = MAX_UNPACKED_BYTES) -> Path:
    """Unpack one uploaded adapter zip into ``dest/name``; returns the folder holding adapter_config.json."""
    safe_name(name, "upload name")
    if len(data) > max_bytes:
        raise UploadError(f"{name}: {len(data) / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB upload limit")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError):
        raise UploadError(f"{name}: not a zip archive (zip the adapter folder and upload the .zip)") from None
    _check_members(name, infos, max_unpacked)
    dest = Path(dest)
    target = dest / name
    if target.exists():
        raise UploadError(f"{name}: an upload with this name already exists in this session")
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dest))
    try:
        for info in infos:
            out = tmp / PurePosixPath(info.filename.replace("\\", "/"))
            if info.is_dir():
                out.mkdir(parents=True, exist_ok=True)
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(out, "wb") as fh:
                shutil.copyfileobj(src, fh, 1 << 20)  # zipfile stops at the declared size and checks the CRC
        configs = sorted(tmp.rglob("adapter_config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise UploadError(f"{name}: no adapter_config.json in the archive")
        os.rename(tmp, target)
        return target / configs[0].parent.relative_to(tmp)
    except (zipfile.BadZipFile, EOFError, OSError, RuntimeError, NotImplementedError, ValueError) as exc:
        if isinstance(exc, UploadError):
            raise
        raise UploadError(f"{name}: the archive is damaged ({type(exc).__name__}: {str(exc)[:80]})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_uploaded_set(folders: list[Path], names: list[str]) -> AdapterSet:
    """Validate the unpacked adapters together (same base shapes, LoRA only, finite values...)."""
    return load_adapter_set(folders, names=names)


def upload_name(filename: str) -> str:
    """A safe folder name for an uploaded file: its stem with anything but ``A-Za-z0-9._+@=,-`` made ``_``."""
    return sanitize_name(PurePosixPath(filename.replace("\\", "/")).stem)


class SessionHolder:
    """Kept in a dashboard session's state: when the session ends and it is collected, its uploads go."""


class UploadArea:
    """The upload folders of one server process under ``root``: ``server-<pid>/<session>/``.

    Creating the area removes the folders of servers whose process is gone; :meth:`session_folder` gives a
    session a fresh folder that is deleted when ``holder`` (an object kept in the session's state) is
    garbage-collected, i.e. when the session ends, and :meth:`discard` deletes one at once (a refused upload).
    """

    def __init__(self, root: Path | None = None):
        self.root = Path(root or Path(tempfile.gettempdir()) / f"tara-uploads-{os.getuid()}")
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for old in self.root.glob("server-*"):
            try:
                pid = int(old.name.split("-", 1)[1])
            except ValueError:
                continue
            if pid != os.getpid() and not pid_alive(pid):
                shutil.rmtree(old, ignore_errors=True)
        self.folder = self.root / f"server-{os.getpid()}"
        self.folder.mkdir(exist_ok=True, mode=0o700)

    def session_folder(self, holder: object) -> Path:
        path = Path(tempfile.mkdtemp(prefix="session-", dir=self.folder))
        weakref.finalize(holder, shutil.rmtree, path, True)
        return path

    @staticmethod
    def discard(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
