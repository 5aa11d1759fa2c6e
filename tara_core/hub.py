"""Model and adapter references: a local folder, or a Hugging Face Hub id found in the local cache.

``resolve(ref)`` accepts what transformers and PEFT accept for ``from_pretrained``: a folder path, or a Hub id
(``org/name``, optionally ``org/name@revision``). Ids are resolved with ``huggingface_hub.snapshot_download(...,
local_files_only=True)`` — the same cache (``$HF_HUB_CACHE``, ``$HF_HOME``) and the same rules — and nothing is
ever downloaded: an id that is not cached is an error naming it and the command that fetches it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HubError", "Source", "resolve", "looks_like_hub_id"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?(@[A-Za-z0-9._/-]+)?$")


class HubError(FileNotFoundError):
    """A reference that is neither a local folder nor a cached Hub id."""


@dataclass(frozen=True)
class Source:
    """Where a model or adapter was read from: ``path`` on this machine, and its portable ``hub_id`` /
    ``revision`` (the commit hash of the cached snapshot) when it came from the Hub cache."""

    path: Path
    hub_id: str | None = None
    revision: str | None = None

    @property
    def portable(self) -> str | None:
        """A name that means the same on another machine (the Hub id), or None for a local folder."""
        return self.hub_id


def looks_like_hub_id(ref: str) -> bool:
    return bool(_ID.match(ref)) and not ref.startswith((".", "/", "~"))


def resolve(ref: str | Path, what: str = "model") -> Source:
    """The local folder for ``ref`` (a folder, or a cached Hub id ``org/name[@revision]``)."""
    path = Path(ref).expanduser()
    if path.exists():
        return Source(path)
    text = str(ref)
    if not looks_like_hub_id(text):
        raise HubError(f"{text}: no such {what} folder")
    repo_id, _, revision = text.partition("@")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(repo_id, revision=revision or None, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError, OSError):
        raise HubError(f"{text}: not a local folder, and the Hub {what} {repo_id!r}"
                       + (f" at {revision!r}" if revision else "")
                       + f" is not in the local Hugging Face cache ({constants.HF_HUB_CACHE}); fetch it once with "
                       f"`hf download {repo_id}` where the Hub is reachable") from None
    return Source(folder, repo_id, folder.name)
