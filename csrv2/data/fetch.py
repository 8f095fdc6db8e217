"""Fetch a set of the shared data folder from its pinned upstream (csrv2.data.sources) and convert it into the cache.

    fetch_set("cranfield")   # → $CSRV2_HOME/data/retrieval/cranfield/ (corpus.jsonl, queries.jsonl, qrels.tsv, …)
    set_folder("cranfield")  # where the catalog reads a set: the converted cache, the shared folder, else fetched

Each file is downloaded from `<mirror>/<repo>/<commit>/<path>` (csrv2.data.sources.mirror: raw.githubusercontent.com
or `$CSRV2_DATA_MIRROR`, an http(s) URL or a local folder laid out the same way) to `<name>.partial` under
`$CSRV2_HOME/data/.downloads/`; an interrupted download resumes from where it stopped (HTTP Range). A file whose
sha256 is not the pinned one is deleted and refused before anything reads it. The verified files are converted
(csrv2.data.convert) into a temporary folder that is renamed into place when complete, with SOURCE.json recording
where it came from, so a half-converted set is never read; the downloads are removed afterwards.

`$CSRV2_DATA_OFFLINE=1` forbids downloads: a missing set then fails at once with the line that says what to fetch or
set (the test suite runs that way).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from csrv2 import paths
from csrv2.assets.registry import AssetError
from csrv2.data.convert import CONVERTERS
from csrv2.data.sources import SOURCES, DataSource, UpstreamFile, mirror
from csrv2.files import atomic_write_dir, sha256_file

RECORD = "SOURCE.json"  # in a converted set's folder: its upstream, the verified sha256 of every file
CHUNK = 1 << 16
TIMEOUT_S = 60


class DataFetchError(AssetError):
    """A set could not be fetched, or a downloaded file failed its sha256; the message says what to do instead."""


def converted_root() -> Path:
    """`$CSRV2_HOME/data`: converted sets, laid out like the shared data folder."""
    return paths.home() / "data"


def converted_folder(name: str) -> Path | None:
    """The converted copy of a set, when complete (the folder is renamed into place whole) and converted from the
    files pinned now (its SOURCE.json names the same commit and sha256s; a copy from older pins counts as absent)."""
    source = SOURCES[name]
    folder = converted_root() / source.folder()
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pinned = {f.path: f.sha256 for f in source.files}
    return folder if (record.get("commit"), record.get("files")) == (source.commit, pinned) else None


def shared_folder(name: str) -> Path | None:
    """The set's folder in the shared data folder ($CSRV2_SHARED_DATA), when there."""
    folder = paths.shared_data_dir() / SOURCES[name].folder()
    return folder if folder.is_dir() else None


def offline() -> bool:
    return os.environ.get("CSRV2_DATA_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def missing_message(name: str, reason: str = "") -> str:
    """The one line for a set that is neither converted, nor in the shared folder, nor fetchable now."""
    source = SOURCES[name]
    root = paths.shared_data_dir()
    why = f" and could not be fetched ({reason})" if reason else ""
    return (
        f"task {name!r} ({source.type}) is not here{why}: run `csrv2 data fetch {name}` where {source.url('')} is "
        "reachable (or point CSRV2_DATA_MIRROR at a mirror of it), or set CSRV2_SHARED_DATA to a copy of the shared "
        f"data folder (now {root}, {'present' if root.is_dir() else 'missing'}); docs/data.md"
    )


def set_folder(name: str, fetch: bool = True) -> Path:
    """Where set `name` is read from: its converted copy, else the shared folder's, else (when `fetch`) fetched now.
    Raises DataFetchError with one line naming `csrv2 data fetch NAME` and CSRV2_SHARED_DATA when none works."""
    found = converted_folder(name) or shared_folder(name)
    if found:
        return found
    if not fetch or offline():
        raise DataFetchError(missing_message(name, "CSRV2_DATA_OFFLINE forbids downloads" if fetch else ""))
    return fetch_set(name)


def data_file(relative: str, fetch: bool = True) -> Path:
    """A file named as under the shared data folder (`clustering/tweet89/texts.jsonl`): from the set's converted
    copy, the shared folder, or fetched. A path of no known set is looked up in the shared folder only."""
    parts = Path(relative).parts
    if len(parts) >= 3 and parts[1] in SOURCES and parts[0] == SOURCES[parts[1]].type:
        return set_folder(parts[1], fetch).joinpath(*parts[2:])
    return paths.shared_data_dir() / relative


# -- download ---------------------------------------------------------------------------------------------------------
def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr)


def _copy_local(base: str, source: DataSource, file: UpstreamFile, partial: Path, bar) -> None:
    """A mirror that is a local folder (or file:// URL) laid out like raw.githubusercontent.com."""
    root = Path(base[len("file://") :] if base.startswith("file://") else base).expanduser()
    path = root / source.repo / source.commit / file.path
    if not path.is_file():
        raise DataFetchError(missing_message(source.name, f"{path} does not exist"))
    shutil.copyfile(path, partial)
    bar.update(file.bytes)


def _download(url: str, file: UpstreamFile, partial: Path, bar) -> None:
    """Append the rest of `url` to `partial` (a Range request when part is there already; a server that ignores the
    range sends the whole file, which then replaces the part)."""
    have = partial.stat().st_size if partial.is_file() else 0
    if have > file.bytes:  # longer than the pinned file: nothing in it can be trusted
        partial.unlink()
        have = 0
    if have == file.bytes:
        bar.update(have)
        return
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
        if have and response.status != 206:
            have = 0
        bar.update(have)
        with open(partial, "ab" if have else "wb") as out:
            left = file.bytes - have
            while left > 0 and (block := response.read(min(CHUNK, left))):
                out.write(block)
                left -= len(block)
                bar.update(len(block))


def download_file(source: DataSource, file: UpstreamFile, dest: Path, bar, base: str | None = None) -> Path:
    """`dest` holding exactly the pinned bytes of `file`: reused when already verified, else downloaded (resuming a
    `.partial`), checked against the pinned sha256 and only then renamed to `dest`."""
    if dest.is_file() and dest.stat().st_size == file.bytes and sha256_file(dest) == file.sha256:
        bar.update(file.bytes)
        return dest
    base = base or mirror()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    url = source.url(file.path, base)
    try:
        if base.startswith(("http://", "https://")):
            _download(url, file, partial, bar)
        else:
            _copy_local(base, source, file, partial, bar)
    except (OSError, http.client.HTTPException) as err:  # URLError too; the part stays: the next try resumes it
        reason = getattr(err, "reason", None) or err
        raise DataFetchError(missing_message(source.name, f"downloading {url} failed: {reason}")) from err
    got = partial.stat().st_size if partial.is_file() else 0
    if got < file.bytes:
        raise DataFetchError(
            missing_message(
                source.name, f"the download of {url} stopped at {got} of {file.bytes} bytes; run again to resume it"
            )
        )
    digest = sha256_file(partial)
    if digest != file.sha256:
        size = partial.stat().st_size
        partial.unlink()
        raise DataFetchError(
            f"{url}: sha256 {digest} ({size} bytes) is not the pinned {file.sha256} ({file.bytes} bytes); the file was "
            f"deleted and not used. The mirror serves other bytes than {source.repo}@{source.commit[:10]}: point "
            "CSRV2_DATA_MIRROR at a faithful mirror, or set CSRV2_SHARED_DATA to a copy of the shared data folder"
        )
    os.replace(partial, dest)
    return dest


def fetch_set(name: str, force: bool = False, log=None) -> Path:
    """Download set `name`'s pinned files, verify them, convert them into `$CSRV2_HOME/data/<type>/<name>/`; returns
    that folder. An existing converted copy is kept unless `force`. `log` gets the one line naming the source
    (default: stderr)."""
    if name not in SOURCES:
        raise KeyError(f"no upstream source for {name!r}; fetchable sets: {', '.join(SOURCES)}")
    source = SOURCES[name]
    done = converted_folder(name)
    if done and not force:
        return done
    if offline():
        raise DataFetchError(missing_message(name, "CSRV2_DATA_OFFLINE forbids downloads"))
    downloads = converted_root() / ".downloads" / name
    downloads.mkdir(parents=True, exist_ok=True)
    with open(downloads.parent / f"{name}.lock", "w") as lock:  # one fetch per set at a time (torchrun ranks)
        with contextlib.suppress(ImportError):  # POSIX; elsewhere unlocked
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)
        done = converted_folder(name)
        if done and not force:  # another process converted it while this one waited
            return done
        return _fetch_and_convert(source, downloads, log)


def _fetch_and_convert(source: DataSource, downloads: Path, log) -> Path:
    name = source.name
    base = mirror()
    (log or (lambda line: print(line, file=sys.stderr, flush=True)))(
        f"fetching {name} ({source.type}) from {source.url('', base)} ({len(source.files)} files, "
        f"{source.size / 1e6:.1f} MB; {source.licence})"
    )
    files: dict[str, Path] = {}
    with _progress(source.size, name) as bar:
        for file in source.files:
            files[file.path] = download_file(source, file, downloads / file.path, bar, base)

    def read(path: str) -> bytes:
        if path not in files:
            raise KeyError(f"{name}: the converter read {path!r}, which is not among the pinned files")
        return files[path].read_bytes()

    converted = CONVERTERS[name](read)
    record = {
        "set": name,
        "type": source.type,
        "repo": source.repo,
        "commit": source.commit,
        "mirror": base,
        "files": {f.path: f.sha256 for f in source.files},
        "licence": source.licence,
        "citation": source.citation,
    }

    def write(tmp: Path) -> None:
        for file_name, content in converted.items():
            data = content if isinstance(content, bytes) else content.encode("utf-8")
            (tmp / file_name).write_bytes(data)
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    # Only a converted set replaces a converted set (its SOURCE.json also marks one written before output markers).
    folder = atomic_write_dir(
        converted_root() / source.folder(), write, kind="converted data set", legacy=lambda f: (f / RECORD).is_file()
    )
    shutil.rmtree(downloads, ignore_errors=True)
    return folder
