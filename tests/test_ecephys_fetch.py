"""``fetch allen-neuropixels`` against a local HTTP server (127.0.0.1) serving the bucket's
``visual-coding-neuropixels/ecephys-cache/`` layout (a fixture EcephysProjectCache)."""
from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
from ecephys_fixture import make_ecephys_cache
from http_fixture import Server, send_ranged

from neuroxr.io import fetch as F
from neuroxr.io.allen import ecephys as E
from neuroxr.io.allen.ecephys_fetch import fetch_neuropixels

pytestmark = pytest.mark.network
PREFIX = "visual-coding-neuropixels/ecephys-cache"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Static files with Range, Content-Length and an MD5 ETag; failure modes set on the server:
    ``short`` (HEAD announces the file, GET sends a shorter one), ``bad_md5`` (ETag of other bytes),
    ``drops`` (the first GETs send half and close the connection)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _file(self):
        rel = self.path.split("?")[0].lstrip("/")
        if not rel.startswith(PREFIX + "/"):
            return None, None
        rel = rel[len(PREFIX) + 1:]
        p = self.server.root / rel
        return (p, rel) if p.is_file() else (None, rel)

    def _etag(self, rel, data):
        return hashlib.md5(data + (b"x" if rel in self.server.bad_md5 else b"")).hexdigest()

    def do_HEAD(self):
        p, rel = self._file()
        self.server.log.append(("HEAD", rel))
        if p is None:
            self.send_error(404)
            return
        data = p.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{self._etag(rel, data)}"')
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        p, rel = self._file()
        self.server.log.append(("GET", rel))
        if p is None:
            self.send_error(404)
            return
        data = p.read_bytes()
        etag = self._etag(rel, data)
        if rel in self.server.short:
            data = data[: len(data) - 100]
        send_ranged(self, data, rel, etag)


_Server = Server


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    made = make_ecephys_cache(tmp_path_factory.mktemp("np_bucket"), n_scenes=4)
    return made


@pytest.fixture
def serve(bucket):
    servers = []

    def start(short=(), bad_md5=(), drops=None):
        srv = _Server(("127.0.0.1", 0), _Handler)
        srv.root, srv.log = Path(bucket["root"]), []
        srv.short, srv.bad_md5, srv.drops = set(short), set(bad_md5), dict(drops or {})
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv, f"http://127.0.0.1:{srv.server_address[1]}/{PREFIX}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def _nwb(sid):
    return f"session_{sid}/session_{sid}.nwb"


def test_fetch_layout_and_bytes(bucket, serve, tmp_path):
    srv, url = serve()
    done = fetch_neuropixels(tmp_path, sessions=[7001], base_url=url, n_scenes=4, api_url=None, progress=False)
    assert done["sessions"] == [7001]
    for rel in ("sessions.csv", "probes.csv", "channels.csv", "units.csv", _nwb(7001),
                *(f"natural_scene_templates/natural_scene_{n}.tiff" for n in range(4))):
        assert (tmp_path / rel).read_bytes() == (bucket["root"] / rel).read_bytes(), rel
    assert not (tmp_path / _nwb(7002)).exists()
    assert not list(tmp_path.rglob("*.part"))
    assert (tmp_path / "manifest.json").is_file()
    # the fetched directory is an EcephysProjectCache the ingest reads
    s = E.ingest_neuropixels(tmp_path / "study", tmp_path)
    assert s["sessions"] == [7001] and s["n_neurons"] == 4 and s["n_images"] == 4
    # a second run downloads nothing
    srv.log.clear()
    again = fetch_neuropixels(tmp_path, sessions=[7001], base_url=url, n_scenes=4, api_url=None, progress=False)
    assert again["downloaded"] == [] and not [m for m in srv.log if m[0] == "GET"]


def test_default_sessions_are_the_natural_scenes_ones(serve, tmp_path):
    _, url = serve()
    done = fetch_neuropixels(tmp_path, base_url=url, templates=False, api_url=None, progress=False)
    assert done["sessions"] == [7001, 7002]          # 7003 is functional_connectivity
    assert not (tmp_path / "natural_scene_templates").exists()


def test_truncated_file_is_refused_and_nothing_kept(serve, tmp_path):
    _, url = serve(short={_nwb(7001)})
    with pytest.raises(F.DownloadError, match=r"session_7001\.nwb.*(bytes|refused)"):
        fetch_neuropixels(tmp_path, sessions=[7001], base_url=url, n_scenes=4, api_url=None, progress=False)
    d = tmp_path / _nwb(7001)
    assert not d.exists() and not d.with_name(d.name + ".part").exists()
    assert (tmp_path / "units.csv").is_file()                           # the verified files stay


def test_wrong_checksum_is_refused_and_nothing_kept(serve, tmp_path):
    _, url = serve(bad_md5={"natural_scene_templates/natural_scene_2.tiff"})
    with pytest.raises(F.DownloadError, match="MD5"):
        fetch_neuropixels(tmp_path, sessions=[7001], base_url=url, n_scenes=4, api_url=None, progress=False)
    d = tmp_path / "natural_scene_templates" / "natural_scene_2.tiff"
    assert not d.exists() and not d.with_name(d.name + ".part").exists()
    assert (tmp_path / "natural_scene_templates" / "natural_scene_1.tiff").is_file()
    assert (tmp_path / _nwb(7001)).is_file()


def test_dropped_connection_resumes(bucket, serve, tmp_path):
    srv, url = serve(drops={_nwb(7002): 2})
    fetch_neuropixels(tmp_path, sessions=[7002], base_url=url, templates=False, api_url=None, progress=False,
                      retries=3)
    assert (tmp_path / _nwb(7002)).read_bytes() == (bucket["root"] / _nwb(7002)).read_bytes()
    assert sum(1 for m in srv.log if m == ("GET", _nwb(7002))) == 3


def test_unknown_session_is_a_clear_error(serve, tmp_path):
    _, url = serve()
    with pytest.raises(F.DownloadError, match="no session 42"):
        fetch_neuropixels(tmp_path, sessions=[42], base_url=url, api_url=None, progress=False)


def test_cli_fetch(bucket, serve, tmp_path, capsys):
    from neuroxr.cli import main

    _, url = serve(bad_md5={_nwb(7002)})
    assert main(["fetch", "allen-neuropixels", str(tmp_path), "--session", "7001", "--base-url", url,
                 "--api-url", "none", "--no-templates", "--quiet"]) == 0
    assert "1 sessions" in capsys.readouterr().err
    assert main(["fetch", "allen-neuropixels", str(tmp_path), "--session", "7002", "--base-url", url,
                 "--api-url", "none", "--no-templates", "--quiet"]) == 2
    assert "MD5" in capsys.readouterr().err and not (tmp_path / _nwb(7002)).exists()
    np.testing.assert_equal((tmp_path / _nwb(7001)).stat().st_size, (bucket["root"] / _nwb(7001)).stat().st_size)


def test_truncated_local_copy_is_downloaded_again(bucket, serve, tmp_path):
    src = bucket["root"] / _nwb(7001)
    dest = tmp_path / _nwb(7001)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(src.read_bytes()[:1000])                     # a copy cut short by an earlier tool
    _, url = serve()
    with pytest.warns(UserWarning, match="differs"):
        fetch_neuropixels(tmp_path, sessions=[7001], base_url=url, templates=False, api_url=None, progress=False)
    assert dest.read_bytes() == src.read_bytes()
