"""Trained weights: pinned per catalogue row, fetched through one layer, verified, loaded as tensors only.

A local HTTP server (127.0.0.1) serves each source's real URL layout: torchvision's
``/models/<file>`` (download.pytorch.org), the Hugging Face hub's ``/<repo_id>/resolve/<revision>/<file>``
(HEAD answered with a redirect and the hub's ``X-Repo-Commit`` / ``X-Linked-Etag`` / ``X-Linked-Size``
headers, the body served from the redirect target with HTTP Range), and the Taskonomy encoders'
``/alexsax/visual-prior/raw/networks/assets/pytorch/<file>``.  The files are fake trained weights
(seeded state dicts of the real architectures) whose sha256 the test catalogue (``NEUROXR_CATALOGS``)
registers.  References: hashlib for the digests, ``huggingface_hub.try_to_load_from_cache`` for the hub
cache layout, ``torch.hub.get_dir()`` for the torch cache, the saved state dicts for what is loaded.
"""
from __future__ import annotations

import hashlib
import http.server
import io
import re
import threading
from pathlib import Path

import pandas as pd
import pytest
import torch
from http_fixture import Server, send_ranged

from neuroxr.catalogs import read_catalog
from neuroxr.features import weights as W

pytestmark = pytest.mark.network

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TIMM_REPO = "timm/test_resnet.r160_in1k"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _hub(self):
        m = re.match(r"^/(.+?/.+?)/resolve/([^/]+)/(.+)$", self.path)
        return m and (m.group(1), m.group(2), m.group(3))

    def do_HEAD(self):
        self.server.log.append(("HEAD", self.path, None))
        hub = self._hub()
        if hub and f"/hub/{hub[0]}/{hub[2]}" in self.server.files:
            data = self.server.files[f"/hub/{hub[0]}/{hub[2]}"]
            self.send_response(302)
            self.send_header("Location", f"/cdn/{hub[0]}/{hub[2]}")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Etag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("ETag", '"not-the-lfs-sha"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_error(404)

    def do_GET(self):
        rng = self.headers.get("Range")
        self.server.log.append(("GET", self.path, rng))
        key = self.path.replace("/cdn/", "/hub/", 1) if self.path.startswith("/cdn/") else self.path
        if key not in self.server.files:
            self.send_error(404)
            return
        data = self.server.files[key]
        if key in self.server.truncate:                     # a truncated file, served as if complete
            data = data[: len(data) // 2]
        if key in self.server.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        send_ranged(self, data, key)


_Server = Server


def _save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def planted():
    """Fake trained weights of three real architectures, as the bytes each source publishes."""
    import safetensors.torch
    import timm
    import torchvision

    from neuroxr.features.taskonomy import build_taskonomy_encoder

    torch.manual_seed(5)
    tv = torchvision.models.squeezenet1_1().state_dict()
    torch.manual_seed(6)
    tm = timm.create_model("test_resnet", pretrained=False).state_dict()
    torch.manual_seed(7)
    tk = build_taskonomy_encoder().state_dict()
    tv_b, tk_b = _save(tv), _save({"state_dict": tk})
    tm_b = safetensors.torch.save({k: v.contiguous() for k, v in tm.items()})
    sha = {k: hashlib.sha256(b).hexdigest() for k, b in (("tv", tv_b), ("tm", tm_b), ("tk", tk_b))}
    return {"sd": {"tv": tv, "tm": tm, "tk": tk}, "bytes": {"tv": tv_b, "tm": tm_b, "tk": tk_b}, "sha": sha,
            "tv_file": f"squeezenet1_1-{sha['tv'][:8]}.pth", "tk_file": f"curvature_encoder-{sha['tk']}.pth"}


@pytest.fixture
def server():
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.files, srv.log, srv.truncate, srv.corrupt, srv.drops = {}, [], set(), set(), {}
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def write_test_catalogs(root: Path, planted, url: str, *, register_timm_sha=True) -> Path:
    """A catalogue override (NEUROXR_CATALOGS) of the shipped rows squeezenet1_1, test_resnet, curvature and
    pixels, pointing at ``url`` and registering the planted files' sha256."""
    root.mkdir(parents=True, exist_ok=True)
    models = read_catalog("models.csv")
    rows = models[models.model.isin(["squeezenet1_1", "pixels"])].to_dict("records")
    tv = rows[0] if rows[0]["model"] == "squeezenet1_1" else rows[1]
    tv.update(weights_file=planted["tv_file"], weights_url=f"{url}/models/{planted['tv_file']}",
              sha256_prefix=planted["sha"]["tv"][:8], sha256="")
    import timm

    cfg = timm.models.get_pretrained_cfg("test_resnet.r160_in1k")
    rows.append({**tv, "model": "test_resnet", "family": "cnn", "source": "timm", "constructor": "test_resnet",
                 "input_size": cfg.input_size[-1], "resize_size": int(cfg.input_size[-1] / cfg.crop_pct),
                 "interpolation": cfg.interpolation, "mean": " ".join(map(str, cfg.mean)),
                 "std": " ".join(map(str, cfg.std)), "params": "", "top1": "", "top5": "", "in_paper": False,
                 "weights_tag": "r160_in1k", "weights_repo": TIMM_REPO, "weights_file": "model.safetensors",
                 "weights_url": f"https://huggingface.co/{TIMM_REPO}/resolve/main/model.safetensors",
                 "sha256_prefix": "", "sha256": planted["sha"]["tm"] if register_timm_sha else ""})
    pd.DataFrame(rows).to_csv(root / "models.csv", index=False)
    tk = read_catalog("taskonomy.csv")
    tk = tk[tk.model.isin(["curvature", "taskonomy_random"])].copy()
    tk.loc[tk.model == "curvature", ["encoder_file", "sha256", "url"]] = [
        planted["tk_file"], planted["sha"]["tk"],
        f"{url}/alexsax/visual-prior/raw/networks/assets/pytorch/{planted['tk_file']}"]
    tk.to_csv(root / "taskonomy.csv", index=False)
    return root


def serve_planted(srv, planted):
    srv.files.update({f"/models/{planted['tv_file']}": planted["bytes"]["tv"],
                      f"/hub/{TIMM_REPO}/model.safetensors": planted["bytes"]["tm"],
                      f"/alexsax/visual-prior/raw/networks/assets/pytorch/{planted['tk_file']}": planted["bytes"]["tk"]})


@pytest.fixture
def zoo(tmp_path, monkeypatch, planted, server):
    for v in ("NEUROXR_OFFLINE", "HF_HUB_OFFLINE", "HF_HUB_CACHE"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("NEUROXR_CATALOGS", str(write_test_catalogs(tmp_path / "catalogs", planted, server.url)))
    serve_planted(server, planted)
    return tmp_path


def _files_under(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file() or p.is_symlink()) if d.exists() else []


# --------------------------------------------------------------------------- the shipped catalogue
def test_every_trained_row_pins_one_file():
    from neuroxr.features.zoo import list_models

    df = list_models()
    for r in df.to_dict("records"):
        spec = W.find_weights_spec(r)
        if r["source"] in ("torchvision", "timm") or (r["source"] == "taskonomy" and r["model"] != "taskonomy_random"):
            assert spec is not None, r["model"]
        if r["source"] == "torchvision":
            assert spec.tag == "IMAGENET1K_V1" and spec.url.endswith("/" + spec.file)
            assert re.search(rf"-{spec.sha256_prefix}\.pth$", spec.file), r["model"]
        if r["source"] == "taskonomy" and spec is not None:
            assert len(spec.sha256) == 64 and spec.file == f"{r['task']}_encoder-{spec.sha256}.pth"
    assert W.find_weights_spec(df[df.model == "taskonomy_random"].iloc[0].to_dict()) is None


def test_torchvision_rows_are_the_v1_enums():
    """File, URL, top-1/top-5 and parameter count of every torchvision row, from the weights enum itself."""
    from torchvision.models import get_model_weights

    from neuroxr.features.zoo import list_models

    for r in list_models(source="torchvision").to_dict("records"):
        w = get_model_weights(r["constructor"])["IMAGENET1K_V1"]
        m = w.meta["_metrics"]["ImageNet-1K"]
        assert (r["weights_url"], r["top1"], r["top5"], r["params"]) == (w.url, m["acc@1"], m["acc@5"],
                                                                         w.meta["num_params"]), r["model"]


def test_timm_rows_pin_a_tag_timm_knows_with_a_hub_repo():
    import timm

    from neuroxr.features.zoo import list_models

    for r in list_models(source="timm").to_dict("records"):
        cfg = timm.models.get_pretrained_cfg(f"{r['constructor']}.{r['weights_tag']}")
        assert cfg is not None, r["model"]
        repo = r["weights_repo"] if isinstance(r["weights_repo"], str) else None
        assert repo == cfg.hf_hub_id, r["model"]
        if repo is None:  # served from a URL: the torch hub cache, the file name's hash prefix checked
            assert r["weights_url"] == cfg.url and cfg.url.endswith("-" + r["sha256_prefix"] + ".pth")
        assert float(r["top1"]) > 50 and float(r["top5"]) > 80, r["model"]


# --------------------------------------------------------------------------- downloads
def test_fetch_weights_fills_the_standard_caches(zoo, planted, server, capsys):
    from huggingface_hub import try_to_load_from_cache

    from neuroxr.cli import main

    assert main(["fetch", "weights", "--model", "squeezenet1_1", "--model", "test_resnet", "--model", "curvature",
                 "--model", "pixels", "--quiet"]) == 0
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    assert (hub / planted["tv_file"]).read_bytes() == planted["bytes"]["tv"]
    assert (hub / planted["tk_file"]).read_bytes() == planted["bytes"]["tk"]
    got = try_to_load_from_cache(TIMM_REPO, "model.safetensors", cache_dir=str(zoo / "hf" / "hub"))
    assert isinstance(got, str) and Path(got).read_bytes() == planted["bytes"]["tm"]
    assert COMMIT in got
    # a second run finds them all and asks the server nothing
    n = len(server.log)
    assert main(["fetch", "weights", "--model", "squeezenet1_1", "--model", "test_resnet", "--model", "curvature",
                 "--quiet"]) == 0
    assert len(server.log) == n
    assert "3 already present" in capsys.readouterr().err


def test_trained_weights_load_as_published_and_record_the_sha(zoo, planted, server, monkeypatch):
    from neuroxr.features.zoo import load_model

    for name, key in (("squeezenet1_1", "tv"), ("test_resnet", "tm"), ("curvature", "tk")):
        lm = load_model(name, weights="trained", device="cpu")
        assert lm.weights == "trained" and lm.weights_sha256 == planted["sha"][key]
        assert lm.settings()["loaded_sha256"] == planted["sha"][key]
        sd = lm.model.state_dict()
        assert all(torch.equal(sd[k], v) for k, v in planted["sd"][key].items()), name
    # offline with the files in the caches: nothing reaches the server
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(server.log)
    for name in ("squeezenet1_1", "test_resnet", "curvature"):
        load_model(name, weights="trained", device="cpu")
    assert len(server.log) == n


def test_torchvision_load_never_unpickles(zoo, planted, monkeypatch):
    """Every torch.load of a trained load passes weights_only=True."""
    from neuroxr.features.zoo import load_model

    seen = []
    real = torch.load

    def spy(*a, **k):
        seen.append(k.get("weights_only"))
        return real(*a, **k)

    monkeypatch.setattr(torch, "load", spy)
    load_model("squeezenet1_1", weights="trained", device="cpu")
    load_model("curvature", weights="trained", device="cpu")
    assert seen and all(w is True for w in seen)


@pytest.mark.parametrize("name,key", [("squeezenet1_1", "/models/{tv_file}"), ("test_resnet", f"/hub/{TIMM_REPO}/model.safetensors"),
                                      ("curvature", "/alexsax/visual-prior/raw/networks/assets/pytorch/{tk_file}")])
@pytest.mark.parametrize("fault", ["truncate", "corrupt"])
def test_truncated_or_wrong_file_is_refused_and_nothing_kept(zoo, planted, server, capsys, name, key, fault):
    from neuroxr.cli import main

    getattr(server, fault).add(key.format(**planted))
    assert main(["fetch", "weights", "--model", name, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "sha256" in err and "expected" in err and "refused" in err and name in err
    line = next(ln for ln in err.splitlines() if "error:" in ln)
    assert re.search(r"sha256 [0-9a-f]{64}, expected sha256( starting with)? [0-9a-f]{8,64}", line)
    assert ("127.0.0.1" in line) and "neuroxr fetch weights --model" in line
    assert _files_under(zoo / "torch" / "hub" / "checkpoints") == []
    assert [f for f in _files_under(zoo / "hf") if "blobs" in f or "snapshots" in f] == []


def test_catalogue_sha_differs_from_the_hubs(zoo, planted, server, tmp_path, monkeypatch, capsys):
    from neuroxr.cli import main

    cat = tmp_path / "other"
    write_test_catalogs(cat, planted, server.url)
    df = pd.read_csv(cat / "models.csv")
    df.loc[df.model == "test_resnet", "sha256"] = "f" * 64
    df.to_csv(cat / "models.csv", index=False)
    monkeypatch.setenv("NEUROXR_CATALOGS", str(cat))
    assert main(["fetch", "weights", "--model", "test_resnet", "--quiet"]) == 1
    assert "f" * 64 in capsys.readouterr().err
    assert not any(m == "GET" for m, *_ in server.log)
    assert _files_under(zoo / "hf") == []


def test_dropped_connection_resumes_with_range(zoo, planted, server):
    key = f"/models/{planted['tv_file']}"
    server.drops[key] = 2
    spec = W.find_weights_spec(read_catalog("models.csv").set_index("model").loc["squeezenet1_1"]
                               .to_dict() | {"model": "squeezenet1_1"})
    path, status = W.fetch_weights(spec, progress=False)
    assert status == "downloaded" and path.read_bytes() == planted["bytes"]["tv"]
    gets = [r for m, p, r in server.log if m == "GET" and p == key]
    assert gets[0] is None and len(gets) == 3 and all(r and r.startswith("bytes=") for r in gets[1:])


def test_offline_print_names_file_url_repo_and_cache_path(zoo, planted, server, monkeypatch, capsys):
    from neuroxr.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["fetch", "weights", "--model", "squeezenet1_1", "--model", "test_resnet"]) == 1
    out = capsys.readouterr().out
    assert f"url: {server.url}/models/{planted['tv_file']}" in out
    assert f"cache path: {zoo / 'torch' / 'hub' / 'checkpoints' / planted['tv_file']}" in out
    assert f"repo id: {TIMM_REPO}" in out
    assert f"cache path: {zoo / 'hf' / 'hub' / 'models--timm--test_resnet.r160_in1k' / 'snapshots' / 'main'}" in out
    assert "huggingface-cli" not in out
    assert server.log == []
    # --print online: the same lines, nothing fetched
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert main(["fetch", "weights", "--model", "test_resnet", "--print"]) == 0
    assert f"repo id: {TIMM_REPO}" in capsys.readouterr().out and server.log == []


def test_filled_by_hand_in_the_printed_places_loads_offline(zoo, planted, server, monkeypatch):
    """Put the files where --print says (hub: snapshots/main/<file>, no refs): an offline load finds them."""
    from neuroxr.features.zoo import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rows = read_catalog("models.csv").set_index("model")
    for name in ("squeezenet1_1", "test_resnet"):
        spec = W.find_weights_spec(rows.loc[name].to_dict() | {"model": name})
        spec.cache_path.parent.mkdir(parents=True, exist_ok=True)
        spec.cache_path.write_bytes(planted["bytes"]["tv" if name == "squeezenet1_1" else "tm"])
        assert load_model(name, weights="trained", device="cpu").weights_sha256 == hashlib.sha256(
            spec.cache_path.read_bytes()).hexdigest()
    assert server.log == []


def test_check_and_fetch_print_name_the_same_place(zoo, planted):
    from neuroxr.pipeline.config import load_settings
    from neuroxr.pipeline.plan import split_missing

    settings = load_settings({"study": {"dir": str(zoo / "study")}, "ingest": {"source": "simulate"},
                              "extract": {"models": ["squeezenet1_1", "test_resnet", "taskonomy_random"],
                                          "weights": ["trained", "random"]}})
    _, weights = split_missing(settings, zoo / "study")
    missing = {(w["model"], w["weights"]): w["reason"] for w in weights}
    assert set(missing) == {("squeezenet1_1", "trained"), ("test_resnet", "trained")}
    rows = read_catalog("models.csv").set_index("model")
    for m in ("squeezenet1_1", "test_resnet"):
        spec = W.find_weights_spec(rows.loc[m].to_dict() | {"model": m})
        assert f"--model {m}" in missing[(m, "trained")]
        assert (str(spec.cache_path) if spec.kind == "torch-hub" else spec.repo_id.replace("/", "--")) in missing[(m, "trained")]
        assert "huggingface-cli" not in missing[(m, "trained")]


def test_fetch_weights_help_imports_no_heavy_library():
    from test_cli_start import _loaded_after

    assert _loaded_after(["fetch", "weights", "--help"]) == []


# --------------------------------------------------------------------------- a conwell2021-style run
PIPELINE = """
[study]
dir = "study"
kind = "conwell2021"
seed = 0

[ingest]
source = "simulate"
model = "alexnet"
weights_seed = 0
n_images = 24
neurons_per_area = 12
n_trials = 6
image_size = 32

[select]
min_reliability = -1.0

[extract]
models = ["squeezenet1_1", "test_resnet"]
weights = ["trained"]
baselines = ["pixels"]
seed = 0
batch_size = 8

[score]
metrics = ["ridge", "rsa"]

[report]
n_boot = 10
seed = 0
"""


def _plant(root: Path, planted, skip=()) -> None:
    """The fake trained files in the standard caches, as torch hub and huggingface_hub store them."""
    hub = root / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    if "tv" not in skip:
        (hub / planted["tv_file"]).write_bytes(planted["bytes"]["tv"])
    if "tk" not in skip:
        (hub / planted["tk_file"]).write_bytes(planted["bytes"]["tk"])
    if "tm" not in skip:
        repo = root / "hf" / "hub" / "models--timm--test_resnet.r160_in1k"
        (repo / "snapshots" / COMMIT).mkdir(parents=True)
        (repo / "snapshots" / COMMIT / "model.safetensors").write_bytes(planted["bytes"]["tm"])
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(COMMIT)


@pytest.mark.parametrize("missing", [None, "tm"])
def test_conwell2021_style_run_loads_every_planted_file(tmp_path, monkeypatch, planted, missing):
    import json

    from neuroxr.cli import main
    from neuroxr.io.store import open_dataset

    for v in ("HF_HUB_CACHE", "HF_ENDPOINT"):
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("NEUROXR_OFFLINE", "1")  # nothing may be fetched: the caches hold the files
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("NEUROXR_CATALOGS", str(write_test_catalogs(tmp_path / "catalogs", planted, "http://127.0.0.1:9")))
    _plant(tmp_path, planted, skip=(missing,) if missing else ())
    cfg = tmp_path / "conwell2021.toml"
    cfg.write_text(PIPELINE)
    assert main(["run", str(cfg)]) == 0
    study = tmp_path / "study"
    want = {"squeezenet1_1": planted["sha"]["tv"], "test_resnet": planted["sha"]["tm"]}
    if missing:
        want.pop("test_resnet")
        not_run = json.loads((study / "reports" / "not_run.json").read_text())
        assert [(w["model"], w["weights"]) for w in not_run] == [("test_resnet", "trained")]
        assert "models--timm--test_resnet.r160_in1k" in not_run[0]["reason"]
        assert not (study / "features" / "test_resnet.zarr").exists()
    for model, sha in want.items():
        ds = open_dataset(study / "features" / f"{model}.zarr")
        variant = json.loads(ds.attrs["variants"])["trained"]
        assert variant["loaded_sha256"] == sha == hashlib.sha256(Path(variant["weights_file"]).read_bytes()).hexdigest()
        assert set(ds["weights"].values.tolist()) == {"trained"}
    scores = open_dataset(study / "scores.zarr")
    assert set(scores["model"].values.tolist()) == set(want) | {"pixels"}
