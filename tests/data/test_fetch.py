"""Fetching a public set from its pinned upstream: download, sha256 refusal, resume, offline errors, conversion.

A mirror folder laid out like raw.githubusercontent.com is served on 127.0.0.1 (nothing outside is reached). The set
is tweet89 (a one-file GSDMM set) with a few invented upstream rows: its source record is replaced by one whose
sha256 is that of the served file, so the real converter and the real catalog entry run end to end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from csrv2 import cli
from csrv2.data import catalog, fetch
from csrv2.data.sources import SOURCES, UpstreamFile

ROWS = [{"text": f"topic {i % 3} words number {i}", "cluster": 10 + i % 3} for i in range(30)]
UPSTREAM = "".join(json.dumps(r) + "\n" for r in ROWS).encode()


class Mirror(ThreadingHTTPServer):
    """Serves `root` (GET, with `Range: bytes=N-`); `cut` closes the first response after that many bytes;
    `requests` records (path, Range header) of every request."""

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), Handler)
        self.root, self.cut, self.requests = root, None, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class Handler(BaseHTTPRequestHandler):
    server: Mirror

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if self.server.cut is not None:  # a connection that drops part way
            body, self.server.cut = body[: self.server.cut], None
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """tweet89's upstream file served on 127.0.0.1, its source record pinned to it, CSRV2_HOME and the shared
    folder empty, downloads allowed; yields the server."""
    source = SOURCES["tweet89"]
    served = tmp_path / "mirror" / source.repo / source.commit / "data" / "Tweet"
    served.parent.mkdir(parents=True)
    served.write_bytes(UPSTREAM)
    pinned = UpstreamFile("data/Tweet", len(UPSTREAM), hashlib.sha256(UPSTREAM).hexdigest(), "0" * 40)
    monkeypatch.setitem(SOURCES, "tweet89", dataclasses.replace(source, files=(pinned,)))
    monkeypatch.setenv("CSRV2_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CSRV2_SHARED_DATA", str(tmp_path / "no-shared-folder"))
    monkeypatch.delenv("CSRV2_DATA_OFFLINE", raising=False)
    monkeypatch.setattr(catalog, "_loaded", {})
    server = Mirror(tmp_path / "mirror")
    monkeypatch.setenv("CSRV2_DATA_MIRROR", server.url)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_missing_set_is_fetched_verified_converted_and_read_by_the_catalog(mirror, tmp_path, capsys):
    assert ("tweet89", "clustering", False) in catalog.shared_tasks()
    task = catalog.get_task("tweet89")  # what a run does by itself
    texts, labels = task.training_texts()
    assert len(texts) + len(task.splits["test"]) == 30 and set(labels) <= {0, 1, 2}
    err = capsys.readouterr().err
    assert f"fetching tweet89 (clustering) from {mirror.url}jackyin12/GSDMM/" in err and "research use" in err
    folder = tmp_path / "home" / "data" / "clustering" / "tweet89"
    rows = [json.loads(line) for line in (folder / "texts.jsonl").read_text().splitlines()]
    assert rows == [{"text": r["text"], "label": r["cluster"]} for r in ROWS]
    record = json.loads((folder / fetch.RECORD).read_text())
    assert record["files"] == {"data/Tweet": hashlib.sha256(UPSTREAM).hexdigest()}
    assert not list((tmp_path / "home" / "data" / ".downloads").rglob("Tweet*"))  # downloads removed
    assert ("tweet89", "clustering", True) in catalog.shared_tasks()
    n = len(mirror.requests)
    assert fetch.fetch_set("tweet89") == folder and len(mirror.requests) == n  # converted: no network


def test_a_tampered_file_is_refused_before_use(mirror, tmp_path):
    source = SOURCES["tweet89"]
    (tmp_path / "mirror" / source.repo / source.commit / "data" / "Tweet").write_bytes(UPSTREAM.replace(b"9", b"8"))
    with pytest.raises(fetch.DataFetchError, match=r"sha256 \w+ .* is not the pinned .* deleted and not used"):
        fetch.fetch_set("tweet89")
    assert fetch.converted_folder("tweet89") is None
    assert not [p for p in (tmp_path / "home").rglob("*") if p.is_file() and not p.name.endswith(".lock")]


def test_an_interrupted_download_resumes_where_it_stopped(mirror, tmp_path):
    mirror.cut = 100
    with pytest.raises(fetch.DataFetchError, match="stopped at 100 of|failed"):
        fetch.fetch_set("tweet89")
    partial = tmp_path / "home" / "data" / ".downloads" / "tweet89" / "data" / "Tweet.partial"
    assert partial.stat().st_size == 100
    folder = fetch.fetch_set("tweet89")
    assert mirror.requests[-1][1] == "bytes=100-"  # only the rest was asked for
    assert len((folder / "texts.jsonl").read_text().splitlines()) == 30


def test_offline_a_missing_set_fails_with_one_line_saying_what_to_fetch_or_set(mirror, monkeypatch, capsys):
    monkeypatch.setenv("CSRV2_DATA_OFFLINE", "1")
    with pytest.raises(fetch.DataFetchError) as err:
        catalog.get_task("tweet89")
    line = str(err.value)
    assert "\n" not in line and "csrv2 data fetch tweet89" in line and "CSRV2_SHARED_DATA" in line
    assert "no-shared-folder, missing" in line and not mirror.requests
    monkeypatch.delenv("CSRV2_DATA_OFFLINE")
    monkeypatch.setenv("CSRV2_DATA_MIRROR", "http://127.0.0.1:9/")  # nothing listens there
    with pytest.raises(SystemExit) as done:
        cli.main(["data", "show", "tweet89"])
    err_lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("csrv2 data: error")]
    assert done.value.code == 2 and len(err_lines) == 1
    assert "could not be fetched (downloading http://127.0.0.1:9/" in err_lines[0]
    assert "csrv2 data fetch tweet89" in err_lines[0] and "CSRV2_SHARED_DATA" in err_lines[0]


def test_the_shared_folder_is_used_when_nothing_is_converted(mirror, tmp_path, monkeypatch):
    folder = tmp_path / "shared" / "clustering" / "tweet89"
    folder.mkdir(parents=True)
    (folder / "texts.jsonl").write_text(
        "".join(json.dumps({"text": f"t {i}", "label": i % 2}) + "\n" for i in range(10))
    )
    monkeypatch.setenv("CSRV2_SHARED_DATA", str(tmp_path / "shared"))
    assert fetch.set_folder("tweet89") == folder and not mirror.requests
    assert fetch.data_file("clustering/tweet89/texts.jsonl") == folder / "texts.jsonl"
    fetch.fetch_set("tweet89")  # once converted, the converted copy comes first
    assert fetch.set_folder("tweet89") == tmp_path / "home" / "data" / "clustering" / "tweet89"


def test_cli_data_fetch(mirror, tmp_path, capsys):
    cli.main(["data", "fetch", "tweet89"])
    out = capsys.readouterr()
    assert out.out.strip() == f"tweet89: {tmp_path / 'home' / 'data' / 'clustering' / 'tweet89'}"
    assert "fetching tweet89" in out.err
    cli.main(["data", "fetch", "tweet89", "--force"])
    assert "fetching tweet89" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["data", "fetch"])
    assert "needs a set name or --all" in capsys.readouterr().err


def test_a_copy_converted_from_other_pins_counts_as_absent(mirror, monkeypatch):
    folder = fetch.fetch_set("tweet89")
    assert fetch.converted_folder("tweet89") == folder
    moved = dataclasses.replace(SOURCES["tweet89"], commit="f" * 40)  # a new pin: the old copy is not used
    monkeypatch.setitem(SOURCES, "tweet89", moved)
    assert fetch.converted_folder("tweet89") is None
