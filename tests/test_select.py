"""Neuron selection and the reliability sweep against independent pandas computations."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from neuroxr.cli import main
from neuroxr.io.arrays import build_responses_dataset, ingest_arrays
from neuroxr.io.store import open_dataset
from neuroxr.responses import count_reliable_neurons, load_selected_responses, select_neurons
from neuroxr.schema import SchemaError
from test_reliability import _reference as reference_reliability  # plain loops, independent of neuroxr

CRE = ["Cux2-CreERT2", "Rorb-IRES2-Cre", "Sst-IRES-Cre", "Vip-IRES-Cre", "Emx1-IRES-Cre", "Scnn1a-Tg3-Cre",
       "Pvalb-IRES-Cre", "Ntsr1-Cre_GN220", "Rbp4-Cre_KL100", "Fezf2-CreER", "Tlx3-Cre_PL56", "Nr5a1-Cre",
       "Slc17a7-IRES2-Cre"]
# written out here, independently of neuroxr.schema
EXCITATORY = {"Emx1", "Slc17a7", "Cux2", "Rorb", "Scnn1a", "Nr5a1", "Rbp4", "Fezf2", "Tlx3", "Ntsr1"}


def _meta(rng, n=600):
    p_run = rng.uniform(0, 0.2, n)
    p_run[rng.random(n) < 0.3] = np.nan
    rel = rng.uniform(-0.2, 1.0, n)
    rel[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame({
        "area": rng.choice(["VISp", "VISl", "VISal", "VISpm", "VISrl", "VISam"], n),
        "cre_line": rng.choice(CRE, n), "depth_um": rng.choice([175, 275, 375, 550], n),
        "p_run_mod": p_run, "p_image": rng.uniform(0, 0.1, n), "splithalf_r": rel,
    })


@pytest.fixture
def ds_meta(rng):
    meta = _meta(rng)
    ds = build_responses_dataset(mean=rng.normal(size=(len(meta), 5)), meta=meta)
    return ds, meta


def _pandas_keep(meta, min_rel=None, cre=None, running=False, selective=False):
    q = pd.Series(True, index=meta.index)
    if cre == "excitatory":
        q &= meta.cre_line.str.split("-").str[0].isin(EXCITATORY)
    elif cre is not None:
        q &= meta.cre_line.str.split("-").str[0].isin(cre)
    if running:
        q &= meta.p_run_mod.isna() | (meta.p_run_mod > 0.05)
    if selective:
        q &= meta.p_image < 0.05
    if min_rel is not None:
        q &= meta.splithalf_r >= min_rel
    return q.to_numpy()


@pytest.mark.parametrize("kw", [
    dict(),
    dict(min_rel=0.8),
    dict(cre="excitatory"),
    dict(cre=["Cux2", "Rorb"]),
    dict(running=True),
    dict(selective=True),
    dict(min_rel=0.5, cre="excitatory", running=True, selective=True),
])
def test_selection_matches_pandas(ds_meta, kw):
    ds, meta = ds_meta
    sel = select_neurons(ds, min_reliability=kw.get("min_rel"), cre_lines=kw.get("cre"),
                         exclude_running=kw.get("running", False), image_selective=kw.get("selective", False))
    want = _pandas_keep(meta, kw.get("min_rel"), kw.get("cre"), kw.get("running", False), kw.get("selective", False))
    assert sel.dtype == bool and sel.dims == ("neuron",)
    np.testing.assert_array_equal(sel.values, want)
    assert 0 < want.sum() < len(meta) or not kw
    assert json.loads(sel.attrs["criteria"])["exclude_running"] == kw.get("running", False)


def test_cre_lines_as_comma_string(ds_meta):
    ds, meta = ds_meta
    sel = select_neurons(ds, cre_lines="Sst,Vip")
    np.testing.assert_array_equal(sel.values, meta.cre_line.str.startswith(("Sst-", "Vip-")).to_numpy())


def test_sweep_matches_pandas(ds_meta):
    ds, meta = ds_meta
    th = [0.0, 0.25, 0.5, 0.8, 0.95]
    got = count_reliable_neurons(ds, th, cre_lines="excitatory")
    exc = meta[meta.cre_line.str.split("-").str[0].isin(EXCITATORY)]
    for t in th:
        sub = exc[exc.splithalf_r >= t]
        want = sub.groupby("area").size()
        for area in sorted(meta.area.unique()):
            assert got.loc[t, area] == want.get(area, 0)
        assert got.loc[t, "total"] == len(sub)
    assert got["total"].is_monotonic_decreasing


def test_missing_metadata_is_a_clear_error(rng):
    ds = build_responses_dataset(mean=rng.normal(size=(4, 3)))
    with pytest.raises(SchemaError, match="no 'p_run_mod'.*--exclude-running"):
        select_neurons(ds, exclude_running=True)
    with pytest.raises(SchemaError, match="no 'p_image'.*--image-selective"):
        select_neurons(ds, image_selective=True)
    with pytest.raises(SchemaError, match="neither 'splithalf_r' nor 'trials'"):
        select_neurons(ds, min_reliability=0.5)


def test_select_command_stores_reliability_and_selection(tmp_path, rng, capsys):
    n_img, n_neu, n_tr = 20, 60, 8
    signal = rng.normal(size=(n_img, n_neu, 1))
    trials = signal + rng.uniform(0.2, 6, size=(1, n_neu, 1)) * rng.normal(size=(n_img, n_neu, n_tr))
    np.save(tmp_path / "trials.npy", trials.astype("f4"))
    meta = pd.DataFrame({"area": rng.choice(["VISp", "VISam"], n_neu), "cre_line": rng.choice(CRE, n_neu),
                         "p_run_mod": rng.uniform(0, 0.1, n_neu), "p_image": rng.uniform(0, 0.1, n_neu)})
    meta.to_csv(tmp_path / "meta.csv", index=False)
    study = tmp_path / "st"
    ingest_arrays(study, trials=tmp_path / "trials.npy", neurons=tmp_path / "meta.csv")
    rc = main(["select", str(study), "--min-reliability", "0.6", "--cre-lines", "excitatory",
               "--exclude-running", "--n-splits", "30"])
    assert rc == 0, capsys.readouterr().err
    ds = open_dataset(study / "responses.zarr")
    rel = reference_reliability(trials.transpose(1, 0, 2).astype("f4").astype(np.float64), 30, 0)
    assert "splithalf_r" in ds.coords and "selected" in ds.data_vars
    np.testing.assert_allclose(ds["splithalf_r"].values, rel, atol=1e-10)
    meta["splithalf_r"] = rel
    want = _pandas_keep(meta, 0.6, "excitatory", running=True)
    np.testing.assert_array_equal(ds["selected"].values, want)
    crit = json.loads(ds["selected"].attrs["criteria"])
    assert crit["min_reliability"] == 0.6 and crit["cre_lines"] == "excitatory"
    out = capsys.readouterr().out
    assert f"selected {want.sum()} of {n_neu} neurons; criteria: split-half reliability >= 0.6" in out
    assert "excitatory cre lines" in out and "not running-modulated" in out
    for area in ("VISp", "VISam"):  # one readable line per area: selected of total, counted by pandas
        got, total = int(want[meta.area == area].sum()), int((meta.area == area).sum())
        assert any(line.split()[:4] == [area, str(got), "of", str(total)] for line in out.splitlines()), out
    assert "{" not in out and "}" not in out  # no raw dict
    # the trials and the store's provenance survive the rewrite, and no temporary store is left
    assert ds.attrs["source"] == "arrays" and "trials" in json.loads(ds.attrs["inputs"])
    np.testing.assert_allclose(ds["trials"].values, trials.transpose(1, 0, 2).astype("f4"))
    assert not [p for p in study.iterdir() if p.name.startswith(".")]
    sub = load_selected_responses(study)
    np.testing.assert_array_equal(sub["neuron"].values, np.flatnonzero(want))
    np.testing.assert_allclose(sub["mean"].values, ds["mean"].values[want])
    # a second selection reuses the stored reliability and replaces the selection
    assert main(["select", str(study), "--image-selective"]) == 0
    ds2 = open_dataset(study / "responses.zarr")
    np.testing.assert_array_equal(ds2["selected"].values, _pandas_keep(meta, selective=True))
    np.testing.assert_allclose(ds2["splithalf_r"].values, rel, atol=1e-10)
    # info reports it
    assert main(["info", str(study)]) == 0
    out = capsys.readouterr().out
    assert f"selection: {_pandas_keep(meta, selective=True).sum()} of {n_neu}" in out
    assert "reliability (split-half r)" in out


def test_load_selected_without_selection_returns_all(tmp_path, rng):
    np.save(tmp_path / "r.npy", rng.normal(size=(5, 3)))
    ingest_arrays(tmp_path / "st", responses=tmp_path / "r.npy")
    assert load_selected_responses(tmp_path / "st").sizes["neuron"] == 3
