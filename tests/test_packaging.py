"""The package as a user installs it: the wheel carries the catalogs, and the CLI behaves in a pipe."""
from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CATALOGS = ("models.csv", "taskonomy.csv")


def _copy_checkout(dst: Path) -> Path:
    """The checkout's files (tracked, and new ones git does not ignore) without build leftovers."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src, out = REPO / rel, dst / rel
        if not (src.exists() or src.is_symlink()):
            continue  # deleted in the work tree
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            out.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, out)
    return dst


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = _copy_checkout(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, cwd=out, capture_output=True, timeout=300)
    (whl,) = out.glob("neuroxr-*.whl")
    return whl


def test_wheel_carries_the_catalogs_as_files(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "neuroxr/features/extract.py" in names and not any(n.startswith("tests/") for n in names)
        for name in CATALOGS:
            member = f"neuroxr/data/catalogs/{name}"
            assert member in names, sorted(n for n in names if "catalog" in n)
            data = z.read(member)
            assert data == (REPO / "catalogs" / name).read_bytes()  # the real file, not a link
            text = data.decode()
            rows = list(csv.DictReader(io.StringIO("".join(l for l in text.splitlines(True) if not l.startswith("#")))))
            assert len(rows) > 20 and "model" in rows[0]


def test_checkout_catalogs_path_is_the_package_data():
    assert (REPO / "catalogs" / "models.csv").samefile(REPO / "neuroxr" / "data" / "catalogs" / "models.csv")


def test_installed_wheel_lists_models_outside_the_checkout(wheel, tmp_path):
    """The wheel unpacked on its own (no checkout on the path) finds its catalogs."""
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NEUROXR_CATALOGS")}
    env["PYTHONPATH"] = str(site)
    code = ("import neuroxr, neuroxr.catalogs as c; from neuroxr.features.zoo import list_models; "
            "print(neuroxr.__file__); print(c.find_catalog_dir()); print(len(list_models()))")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=True)
    mod, cat_dir, n = res.stdout.split()
    assert Path(mod).is_relative_to(site) and Path(cat_dir).is_relative_to(site)
    rows = {name: sum(1 for _ in open(REPO / "catalogs" / name) if not _.startswith("#")) - 1 for name in CATALOGS}
    assert int(n) == rows["models.csv"] + rows["taskonomy.csv"]


def test_models_into_a_closed_pipe_ends_quietly(tmp_path):
    """`neuroxr models | head`: the reader leaves before the table is written; no BrokenPipeError traceback."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r, w = os.pipe()
    os.close(r)  # nobody reads: every write to the pipe fails with EPIPE
    try:
        res = subprocess.run([sys.executable, "-m", "neuroxr", "models"], stdout=w, stderr=subprocess.PIPE,
                             cwd=tmp_path, env=env, text=True, timeout=120)
    finally:
        os.close(w)
    assert "Traceback" not in res.stderr and "BrokenPipeError" not in res.stderr, res.stderr
    assert res.returncode == 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


def test_every_option_of_the_features_and_domains_commands_has_help():
    import argparse

    from neuroxr.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    shared = {"--threads-per-worker"}  # the cluster options of cli/_common.py
    for name in ("models", "extract", "naturalness", "make-domains", "train-ssl", "domains"):
        bare = [a.option_strings or a.dest for a in sub.choices[name]._actions
                if not a.help and not set(a.option_strings) & shared]
        assert not bare, (name, bare)
