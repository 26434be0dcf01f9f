"""``fetch allen`` against a local HTTP server (127.0.0.1) serving a fixture cache in the bucket's layout."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from allen_fixture import ExperimentSpec, make_allen_cache
from http_fixture import Server, send_ranged

from neuroxr.io import fetch as F

pytestmark = pytest.mark.network


class _Handler(http.server.BaseHTTPRequestHandler):
    """Static files with Range, Content-Length and an MD5 ETag; failure modes set on the server."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # quiet
        pass

    def _file(self):
        rel = self.path.split("?")[0].lstrip("/")
        prefix = self.server.prefix
        if not rel.startswith(prefix):
            return None, None
        p = self.server.root / rel[len(prefix):].lstrip("/")
        return (p, rel[len(prefix):].lstrip("/")) if p.is_file() else (None, None)

    def _send_headers(self, p, rel):
        data = p.read_bytes()
        etag = hashlib.md5(data).hexdigest()
        return data, etag

    def _rma(self, head=False):
        """``/api/v2/data/query.json`` (well-known file query) and ``/api/v2/well_known_file_download/N``."""
        from urllib.parse import unquote

        path = unquote(self.path)
        if path.startswith("/api/v2/data/query.json"):
            m = re.search(r"attachable_id\$eq(\d+)\].*name\$eq(\w+)\]", path)
            key = (int(m.group(1)), m.group(2)) if m else None
            rows = ([{"download_link": f"/api/v2/well_known_file_download/{self.server.rma[key][0]}",
                      "attachable_id": key[0]}] if key in self.server.rma else [])
            body = json.dumps({"success": True, "num_rows": len(rows), "msg": rows}).encode()
        elif path.startswith("/api/v2/well_known_file_download/"):
            if head:                                          # this server has no HEAD for downloads
                self.send_error(405)
                return True
            n = int(path.rsplit("/", 1)[1])
            body = next(self.server.root.joinpath(rel).read_bytes() for k, (i, rel) in self.server.rma.items() if i == n)
        else:
            return False
        self.server.log.append(("GET", path, None))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return True

    def do_HEAD(self):
        if self._rma(head=True):
            return
        p, rel = self._file()
        self.server.log.append(("HEAD", rel, None))
        if p is None:
            self.send_error(404)
            return
        data, etag = self._send_headers(p, rel)
        size = len(data) + (7 if rel in self.server.wrong_size else 0)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self):
        if self._rma():
            return
        p, rel = self._file()
        rng = self.headers.get("Range")
        self.server.log.append(("GET", rel, rng))
        if p is None:
            self.send_error(404)
            return
        data, etag = self._send_headers(p, rel)
        if rel in self.server.corrupt:                      # same size, other bytes, original ETag
            data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
        send_ranged(self, data, rel, etag)


_Server = Server


@pytest.fixture
def serve():
    servers = []

    def start(root, prefix="visual-coding-2p", drops=None, corrupt=(), wrong_size=(), rma=None):
        srv = _Server(("127.0.0.1", 0), _Handler)
        srv.root, srv.prefix, srv.log, srv.rma = Path(root), prefix, [], dict(rma or {})
        srv.drops, srv.corrupt, srv.wrong_size = dict(drops or {}), set(corrupt), set(wrong_size)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv, f"http://127.0.0.1:{srv.server_address[1]}/{prefix}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """The 'bucket': a fixture cache (its own manifest is not fetched: fetch writes the standard one)."""
    root = tmp_path_factory.mktemp("bucket")
    exps = [ExperimentSpec(501000001, 511000001, "VISp", "Cux2-CreERT2", 175, n_cells=4),
            ExperimentSpec(501000002, 511000002, "VISl", "Rorb-IRES2-Cre", 275, n_cells=3),
            ExperimentSpec(501000004, 511000001, "VISp", "Cux2-CreERT2", 175, n_cells=3, session_type="three_session_A")]
    make_allen_cache(root, exps, seed=3, n_trials=4, image_shape=(6, 8))
    return root


def _files(root):
    return {str(p.relative_to(root)): p.read_bytes() for p in Path(root).rglob("*")
            if p.is_file() and p.name not in ("manifest.json", F.RECORD)}


def test_fetch_reproduces_the_cache_and_skips_present_files(remote, serve, tmp_path):
    srv, url = serve(remote)
    out = tmp_path / "cache"
    done = F.fetch_allen(out, base_url=url, progress=False, api_url=None)
    want = {k: v for k, v in _files(remote).items() if "501000004" not in k}   # session A not fetched
    assert _files(out) == want
    assert sorted(done["experiments"]) == [501000001, 501000002]
    assert (out / "manifest.json").is_file()
    # a second run downloads nothing
    n_get = sum(1 for m, *_ in srv.log if m == "GET")
    again = F.fetch_allen(out, base_url=url, progress=False, api_url=None)
    assert again["downloaded"] == [] and len(again["present"]) == len(want)
    assert sum(1 for m, *_ in srv.log if m == "GET") == n_get
    # AllenSDK layout: the reader finds everything through the written manifest
    from neuroxr.io.allen import open_allen_cache

    c = open_allen_cache(out)
    assert c.nwb_path(501000001).read_bytes() == (remote / "ophys_experiment_data/501000001.nwb").read_bytes()


def test_fetch_filters_by_area(remote, serve, tmp_path):
    _, url = serve(remote)
    done = F.fetch_allen(tmp_path / "c", areas=["VISl"], base_url=url, progress=False, api_url=None)
    assert done["experiments"] == [501000002]
    assert not (tmp_path / "c/ophys_experiment_data/501000001.nwb").exists()


def test_resumes_after_dropped_connection(remote, serve, tmp_path):
    rel = "ophys_experiment_data/501000001.nwb"
    srv, url = serve(remote, drops={rel: 2})
    dest = tmp_path / "x.nwb"
    F.download_file(f"{url}/{rel}", dest, size=(remote / rel).stat().st_size, progress=False, backoff=0)
    assert dest.read_bytes() == (remote / rel).read_bytes()
    gets = [r for m, f, r in srv.log if m == "GET" and f == rel]
    assert gets[0] is None and all(r is not None and r.startswith("bytes=") for r in gets[1:])
    assert len(gets) == 3
    assert not dest.with_name("x.nwb.part").exists()


def test_interrupted_run_keeps_part_and_next_run_resumes(remote, serve, tmp_path):
    rel = "ophys_experiment_events/501000002_events.npz"
    srv, url = serve(remote, drops={rel: 1})
    out = tmp_path / "cache"
    with pytest.raises(F.DownloadError, match="run the same command again"):
        F.fetch_allen(out, base_url=url, progress=False, api_url=None, retries=0, experiments=[501000002])
    part = out / (rel + ".part")
    size = (remote / rel).stat().st_size
    assert part.exists() and 0 < part.stat().st_size < size
    assert not (out / rel).exists()
    half = part.stat().st_size
    F.fetch_allen(out, base_url=url, progress=False, api_url=None, experiments=[501000002])
    assert (out / rel).read_bytes() == (remote / rel).read_bytes()
    assert ("GET", rel, f"bytes={half}-") in srv.log


def test_refuses_wrong_checksum_and_keeps_nothing(remote, serve, tmp_path):
    rel = "ophys_experiment_data/501000002.nwb"
    _, url = serve(remote, corrupt={rel})
    out = tmp_path / "cache"
    with pytest.raises(F.DownloadError, match="MD5"):
        F.fetch_allen(out, base_url=url, progress=False, api_url=None)
    assert not (out / rel).exists() and not (out / (rel + ".part")).exists()
    # the verified files of the same run are kept
    assert (out / "ophys_experiment_data/501000001.nwb").exists()


def test_refuses_wrong_size_and_keeps_nothing(remote, serve, tmp_path):
    rel = "ophys_experiment_events/501000001_events.npz"
    _, url = serve(remote, wrong_size={rel})
    dest = tmp_path / "e.npz"
    info = F.head_file(f"{url}/{rel}")
    with pytest.raises(F.VerificationError, match="announced"):
        F.download_file(f"{url}/{rel}", dest, size=info["size"], progress=False)
    assert not dest.exists() and not dest.with_name("e.npz.part").exists()


def test_present_but_damaged_file_is_replaced(remote, serve, tmp_path):
    _, url = serve(remote)
    out = tmp_path / "cache"
    F.fetch_allen(out, base_url=url, progress=False, api_url=None, experiments=[501000001])
    p = out / "ophys_experiment_data/501000001.nwb"
    b = bytearray(p.read_bytes())
    b[100] ^= 0xFF
    p.write_bytes(bytes(b))
    os.utime(p, ns=(1, 1))                  # also defeat the verification record
    with pytest.warns(UserWarning, match="differs"):
        F.fetch_allen(out, base_url=url, progress=False, api_url=None, experiments=[501000001])
    assert p.read_bytes() == (remote / "ophys_experiment_data/501000001.nwb").read_bytes()


def test_cli_fetch_then_ingest(remote, serve, tmp_path):
    from neuroxr.cli import main

    _, url = serve(remote)
    cache = tmp_path / "cache"
    assert main(["fetch", "allen", str(cache), "--base-url", url, "--quiet", "--cre-lines", "Cux2",
                 "--api-url", "none"]) == 0
    assert (cache / "ophys_experiment_data/501000001.nwb").exists()
    assert not (cache / "ophys_experiment_data/501000002.nwb").exists()
    assert main(["ingest", "allen", str(tmp_path / "study"), "--cache", str(cache)]) == 0
    import xarray as xr

    ds = xr.open_zarr(tmp_path / "study" / "responses.zarr")
    assert set(np.unique(ds.area.values)) == {"VISp"} and ds.sizes["neuron"] == 4


def test_files_missing_from_the_bucket_come_from_the_rma_api(remote, serve, tmp_path):
    bucket = tmp_path / "bucket"
    shutil.copytree(remote, bucket)
    rel = "ophys_experiment_events/501000002_events.npz"
    (bucket / rel).rename(tmp_path / "elsewhere.npz")
    srv, url = serve(bucket, rma={(501000002, "ObservatoryEventsFile"): (777, "../elsewhere.npz")})
    api = url.rsplit("/", 1)[0]
    out = tmp_path / "cache"
    with pytest.raises(F.DownloadError, match="501000002_events.npz.*404"):
        F.fetch_allen(out, base_url=url, progress=False, api_url=None)
    F.fetch_allen(out, base_url=url, progress=False, api_url=api)
    assert (out / rel).read_bytes() == (remote / rel).read_bytes()
    assert any("ObservatoryEventsFile" in f for m, f, r in srv.log if m == "GET")


def test_present_metadata_tables_are_kept_unless_refreshed(remote, serve, tmp_path):
    srv, url = serve(remote)
    out = tmp_path / "cache"
    F.fetch_allen(out, base_url=url, progress=False, api_url=None, experiments=[501000001])
    p = out / "ophys_experiments.json"
    recs = json.loads(p.read_text())
    p.write_text(json.dumps(recs, indent=2))                  # e.g. written by AllenSDK: same records, other bytes
    n_get = len(srv.log)
    F.fetch_allen(out, base_url=url, progress=False, api_url=None, experiments=[501000001])
    assert json.loads(p.read_text()) == recs and "\n" in p.read_text()
    assert not any(f == "ophys_experiments.json" for m, f, r in srv.log[n_get:] if m == "GET")
    F.fetch_allen(out, base_url=url, progress=False, api_url=None, experiments=[501000001], refresh_metadata=True)
    assert p.read_bytes() == (remote / "ophys_experiments.json").read_bytes()
    p.write_text(p.read_text()[:50])                          # truncated: downloaded again
    with pytest.warns(UserWarning, match="not valid JSON"):
        F.fetch_allen(out, base_url=url, progress=False, api_url=None, experiments=[501000001])
    assert p.read_bytes() == (remote / "ophys_experiments.json").read_bytes()
