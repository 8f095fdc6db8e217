"""The Hugging Face hub, behind three functions (huggingface_hub is imported only when one is called).

    looks_like_repo_id("org/name")                 a valid hub id that is not an existing local path
    snapshot("org/name", revision, ["*.json"], what="the head")   a local folder with those files of the repo
    hub_file("org/name", "modules.json", revision) the file's local path, or None when the repo does not have it

Every failure to reach or read the hub is a FileNotFoundError that says what was looked for, where, and why it failed
(offline, no such repo or revision, no access), so a caller never has to know huggingface_hub's exception types.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

HUB_ERRORS = (OSError, ValueError)  # huggingface_hub: HfHubHTTPError and LocalEntryNotFoundError are OSErrors,
# HFValidationError a ValueError; a connection error surfaces as LocalEntryNotFoundError (no cached copy either)


def looks_like_repo_id(name: str | Path) -> bool:
    """True for `name` / `org/name` ids the hub accepts, when no local file or folder of that name exists."""
    text = str(name)
    if not text or Path(text).expanduser().exists() or text.startswith(("/", ".", "~")) or text.count("/") > 1:
        return False
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return True


def _revision(revision: str | None) -> str | None:
    return revision or None  # "" (a config's default) → the repo's default branch


def snapshot(repo_id: str, revision: str | None, allow_patterns: Sequence[str] | None, what: str) -> Path:
    """The local folder of a download (or the cached copy) of `repo_id` at `revision`, only `allow_patterns` files."""
    import huggingface_hub

    try:
        folder = huggingface_hub.snapshot_download(
            repo_id, revision=_revision(revision), allow_patterns=list(allow_patterns) if allow_patterns else None
        )
    except HUB_ERRORS as err:
        at = f" at revision {revision!r}" if revision else ""
        raise FileNotFoundError(
            f"{what} {repo_id!r}: not a local folder, and fetching it from the Hugging Face hub{at} failed "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'}); give an existing "
            "folder, or check the id, the revision, your access to the repo and the network"
        ) from err
    return Path(folder)


def hub_file(repo_id: str, filename: str, revision: str | None) -> Path | None:
    """One file of a hub repo (downloaded, or the cached copy when the hub cannot be reached); None when the repo has
    no such file. Other failures (no network and nothing cached, no repo) are FileNotFoundError naming the repo."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=_revision(revision)))
    except EntryNotFoundError as err:
        if not isinstance(err, FileNotFoundError):  # the hub answered: the repo has no such file
            return None
        cached = huggingface_hub.try_to_load_from_cache(repo_id, filename, revision=_revision(revision))
        if isinstance(cached, str):
            return Path(cached)
        if cached is not None:  # the cache remembers that the repo has no such file
            return None
        raise FileNotFoundError(
            f"{repo_id}/{filename}: the Hugging Face hub cannot be reached and no copy is cached ({err})"
        ) from err
    except HUB_ERRORS as err:
        raise FileNotFoundError(f"{repo_id}/{filename}: reading it from the Hugging Face hub failed ({err})") from err
