"""Build an offline mirror of the public sets' pinned upstream files: DIR/<owner>/<repo>/<commit>/<path>.

    python scripts/upstream_mirror.py DIR                   download every pinned file (CSRV2_DATA_MIRROR or GitHub)
    python scripts/upstream_mirror.py DIR --git GITDIRS     take them from local clones: GITDIRS/<owner>+<repo>/ (bare
                                                            or not), read at the pinned commit
    python scripts/upstream_mirror.py DIR --sets cranfield tweet89

Every file is checked against its pinned sha256 and size (and, from git, its blob sha) before it is written. Then
`CSRV2_DATA_MIRROR=DIR csrv2 data fetch --all` converts from it with no network, serving the folder over http does
the same for other machines, and `CSRV2_TEST_UPSTREAM=DIR pytest tests/data/test_sources.py` proves every converted
set equal to the shared folder's rows.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

from csrv2.data.fetch import download_file
from csrv2.data.sources import SOURCES


def _git_bytes(clones: Path, repo: str, commit: str, path: str) -> bytes:
    folder = clones / repo.replace("/", "+")
    git_dir = next(d for d in (folder / "repo" / ".git", folder / "repo", folder / ".git", folder) if d.is_dir())
    return subprocess.run(
        ["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="mirror folder to fill")
    parser.add_argument("--git", type=Path, default=None, help="folder of local clones named <owner>+<repo>")
    parser.add_argument("--sets", nargs="*", default=list(SOURCES), help="sets to mirror (default: all)")
    args = parser.parse_args(argv)
    from tqdm.auto import tqdm

    for name in args.sets:
        source = SOURCES[name]
        for file in source.files:
            dest = args.out / source.repo / source.commit / file.path
            if args.git is None:
                with tqdm(total=file.bytes, desc=file.path, unit="B", unit_scale=True, file=sys.stderr) as bar:
                    download_file(source, file, dest, bar)
                continue
            data = _git_bytes(args.git, source.repo, source.commit, file.path)
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            digest = hashlib.sha256(data).hexdigest()
            if (digest, blob, len(data)) != (file.sha256, file.blob, file.bytes):
                raise SystemExit(f"{source.repo}@{source.commit[:10]}:{file.path} is not the pinned file")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        print(f"{name}: {len(source.files)} files in {args.out / source.repo / source.commit}")


if __name__ == "__main__":
    main()
