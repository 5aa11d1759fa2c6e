"""Writing files so that nothing is lost and nothing lands where it must not.

* :func:`safe_name` — a name that becomes a path component (an adapter or task name, an upload) is one plain
  component: letters, digits, ``._-+@=,``, at most 100 characters, not ``.``/``..``, no leading dot.
* :func:`inside` — a path resolved under a root stays under it (no ``..`` or symlink escape).
* :func:`atomic_file_write` — temp file in the same folder, fsync, rename; the umask's permissions.
* :class:`atomic_dir` — a whole output folder built in a hidden temp sibling and put in place by **one
  atomic rename** (``renameat2(RENAME_EXCHANGE)`` swaps it with an existing folder on ``overwrite``, so the
  old output stays visible until the new one is in place; where the kernel or filesystem lacks it, the old
  folder is moved aside first). The final step runs under an exclusive lock on the parent folder, so two
  runs writing one folder cannot both succeed without ``overwrite``; temp folders left by killed runs are
  removed by the next run writing the same target. Every failure is one :class:`OutputError` line and leaves
  nothing behind.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import shutil
import tempfile
from pathlib import Path

__all__ = ["OutputError", "safe_name", "sanitize_name", "inside", "umask_mode", "atomic_file_write", "atomic_dir",
           "check_output_file", "exclusive", "pid_alive"]

_NAME = re.compile(r"^[A-Za-z0-9_+@=,-][A-Za-z0-9._+@=,-]{0,99}$")


class OutputError(ValueError):
    """An output that cannot be written as asked (exists, bad name, no permission, disk full...)."""


def safe_name(name: str, what: str = "name") -> str:
    """``name`` if it is one safe path component, else a :class:`ValueError` saying why."""
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        shown = name if isinstance(name, str) and len(name) <= 60 else f"{str(name)[:57]}..."
        raise ValueError(f"{what} {shown!r} cannot be used as a file name (letters, digits and ._-+@=, only, "
                         "at most 100 characters, not starting with a dot)")
    return name


def sanitize_name(text: str, default: str = "adapter") -> str:
    """A safe name made from any text (a folder or file name): characters outside ``A-Za-z0-9._+@=,-`` become
    ``_``, leading dots go, at most 100 characters."""
    name = re.sub(r"[^A-Za-z0-9._+@=,-]", "_", text).lstrip(".")[:100]
    return name or default


def inside(root: str | Path, path: str | Path, what: str = "path") -> Path:
    """``root / path`` resolved, refusing anything that leaves ``root``."""
    root_r = Path(root).resolve()
    full = (root_r / path).resolve()
    if full != root_r and root_r not in full.parents:
        raise ValueError(f"{what} {str(path)!r} points outside {root}")
    return full


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` with the process umask applied (what ``open()`` would give a new file)."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _describe(exc: OSError, path: Path) -> str:
    reasons = {errno.ENOSPC: "no space left on the device", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied", errno.EROFS: "read-only file system",
               errno.ENAMETOOLONG: "name too long", errno.ENOTDIR: "a parent is not a folder",
               errno.EISDIR: "it is a folder", errno.EDQUOT: "disk quota exceeded"}
    return f"cannot write {path}: {reasons.get(exc.errno, exc.strerror or str(exc) or type(exc).__name__)}"


def check_output_file(path: str | Path) -> Path:
    """Fail early (before any work) when a file cannot be written at ``path``: a folder, a missing or
    non-folder parent, a name too long."""
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"cannot write {p}: it is a folder")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"cannot write {p}: {parent} is not a folder")
    if len(p.name.encode()) > 255:
        raise OutputError(f"cannot write {p}: name too long")
    return p


def atomic_file_write(path: Path | str, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same folder, fsync and an atomic rename."""
    path = check_output_file(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise OutputError(_describe(exc, path)) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def exclusive(folder: Path | str, what: str):
    """Hold an exclusive lock on ``folder`` (flock on the folder itself) for the block, or raise
    :class:`OutputError` at once when another process holds it: two writers of the same folder (two ``zoo
    precompute`` runs of one zoo) would remove each other's staging files. The lock ends with the process, so a
    killed run never leaves one behind."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"{what} {folder} is being written by another process; wait for it to finish") from None
        yield
    finally:
        os.close(fd)  # releases the lock


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class atomic_dir:
    """Context manager yielding a hidden temp folder next to ``target`` that becomes ``target`` on success
    (see the module docstring). On an exception the temp folder is removed and ``target`` is untouched."""

    def __init__(self, target: str | Path, overwrite: bool = False):
        self.target = Path(target)
        self.overwrite = overwrite

    def check(self) -> None:
        """Refuse a target that cannot be written (callable early, before any work)."""
        name = self.target.name
        if name in ("", ".", "..") or str(self.target).rstrip("/").endswith(("/.", "/..")) or self.target == Path("."):
            raise OutputError(f"{str(self.target)!r} is not a new folder name; give the folder to create, e.g. merged/")
        if len(name.encode()) > 200:  # the hidden temp name adds ~30 bytes to a 255-byte limit
            raise OutputError(f"cannot write {self.target}: name too long")
        parent = self.target.parent
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"cannot write {self.target}: {parent} is not a folder")
        if self.target.exists() and not self.target.is_dir():
            raise OutputError(f"cannot write {self.target}: a file of that name exists")
        if self.target.exists() and not self.overwrite:
            raise OutputError(f"{self.target} already exists; choose another folder or pass overwrite")

    def _lock(self) -> int:
        fd = os.open(self.target.parent, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    def _clean_leftovers(self) -> None:
        """Remove temp/old folders of this target left by runs that were killed (their pid is gone)."""
        pattern = re.compile(rf"^\.{re.escape(self.target.name)}\.(tmp|old)-(\d+)-")
        for p in self.target.parent.iterdir():
            m = pattern.match(p.name)
            if m and not pid_alive(int(m.group(2))):
                shutil.rmtree(p, ignore_errors=True)

    def __enter__(self) -> Path:
        self.check()
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            fd = self._lock()
            try:
                self._clean_leftovers()
            finally:
                os.close(fd)
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.tmp-{os.getpid()}-",
                                             dir=self.target.parent))
            os.chmod(self.tmp, umask_mode(0o777))  # mkdtemp makes 0700; give the folder normal permissions
        except OSError as exc:
            raise OutputError(_describe(exc, self.target)) from None
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
                raise OutputError(_describe(exc, self.target)) from None
            return False
        try:
            for p in self.tmp.rglob("*"):
                if p.is_file():
                    os.chmod(p, umask_mode())
            fd = self._lock()
            try:
                if self.target.exists():
                    if not self.overwrite:
                        raise OutputError(f"{self.target} already exists (written by another run meanwhile); "
                                          "choose another folder or pass overwrite")
                    if not _exchange(self.tmp, self.target):
                        old = self.target.with_name(f".{self.target.name}.old-{os.getpid()}-")
                        os.rename(self.target, old)
                        os.rename(self.tmp, self.target)
                        self.tmp = old
                    shutil.rmtree(self.tmp, ignore_errors=True)  # now the previous output
                else:
                    os.rename(self.tmp, self.target)
            finally:
                os.close(fd)
        except OSError as exc:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise OutputError(_describe(exc, self.target)) from None
        except OutputError:
            shutil.rmtree(self.tmp, ignore_errors=True)
            raise
        return False
