"""Naturalness: radially averaged power spectrum slopes against images of known slope."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from neuroxr.cli import main
from neuroxr.domains.naturalness import (
    calc_naturalness,
    calc_power_spectrum,
    calc_spectral_slopes,
    fit_power_law,
    summarize_naturalness,
)
from neuroxr.domains.synthetic import make_line_drawings, make_spectral_images, write_image_folder
from neuroxr.errors import MissingDataError


def _reference_field(p, n, rng):
    """1/f^p power, built independently: Hermitian half-spectrum with uniform phases and irfft2."""
    ky = np.fft.fftfreq(n)[:, None] * n
    kx = np.fft.rfftfreq(n)[None, :] * n
    f = np.sqrt(ky ** 2 + kx ** 2)
    amp = np.where(f > 0, f, np.inf) ** (-p / 2.0)
    half = amp * np.exp(2j * np.pi * rng.random(f.shape)) * rng.rayleigh(size=f.shape)
    return np.fft.irfft2(half, s=(n, n))


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0, 2.5, 3.0])
def test_slope_recovered_within_0_1(p, rng):
    ref = np.stack([_reference_field(p, 64, rng) for _ in range(8)])
    got = calc_spectral_slopes(ref, crop=None)
    assert abs(got.mean() - p) < 0.1
    assert np.all(np.abs(got - p) < 0.3)
    # the package's own generator (uint8, as written to disk) too
    ours = calc_spectral_slopes(make_spectral_images(8, size=64, p=p, seed=3))
    assert abs(ours.mean() - p) < 0.1


def test_power_spectrum_bins_match_brute_force(rng):
    img = rng.normal(size=(20, 26))  # non-square: centre crop to 20 x 20
    f, power = calc_power_spectrum(img, crop=None)
    crop = img[:, 3:23]
    P = np.abs(np.fft.fft2(crop)) ** 2
    k = np.fft.fftfreq(20) * 20
    K = np.sqrt(k[:, None] ** 2 + k[None, :] ** 2)
    for b, lo in enumerate(np.arange(0.5, 10.5, 1.0)):
        m = (K >= lo) & (K < lo + 1)
        assert power[b] == pytest.approx(P[m].mean(), rel=1e-10)
        assert f[b] == pytest.approx(K[m].mean(), rel=1e-10)


def test_grating_power_sits_at_its_frequency():
    n, k0 = 64, 6
    x = np.arange(n)
    img = np.cos(2 * np.pi * k0 * x / n)[None, :] * np.ones((n, 1))
    f, power = calc_power_spectrum(img, crop=None)
    assert np.argmax(power) == k0 - 1  # bins start at f = 1
    assert f[np.argmax(power)] == pytest.approx(k0, abs=0.3)


def test_fit_power_law_exact_on_noise_free_power_law():
    f = np.arange(1, 40, dtype=float)
    p, A = fit_power_law(f, 7.0 / f ** 2.3)
    assert p == pytest.approx(2.3, abs=1e-10) and A == pytest.approx(7.0, rel=1e-10)
    p2, A2 = fit_power_law(f, 7.0 / f ** 2.3, fit="linear")
    assert p2 == pytest.approx(2.3, abs=1e-6)


def test_naturalness_formula():
    assert calc_naturalness(2.5) == pytest.approx(-math.log(0.5))
    assert calc_naturalness(1.0) == pytest.approx(0.0)
    assert np.isinf(calc_naturalness(2.0))


def test_summarize_folders_and_cli(tmp_path, capsys):
    d1 = write_image_folder(make_spectral_images(6, size=48, p=2.0, seed=1), tmp_path / "natural")
    d2 = write_image_folder(make_line_drawings(6, size=48, seed=2), tmp_path / "lines")
    table, slopes = summarize_naturalness([d1, d2], crop=48, return_slopes=True)
    assert list(table.columns) == ["domain", "n_images", "p_mean", "p_sd", "naturalness"]
    assert list(table["domain"]) == ["natural", "lines"]
    assert list(table["n_images"]) == [6, 6]
    assert table.loc[0, "p_mean"] == pytest.approx(np.mean(slopes["natural"]))
    assert table.loc[0, "p_sd"] == pytest.approx(np.std(slopes["natural"], ddof=1))
    assert table.loc[0, "naturalness"] == pytest.approx(-np.log(abs(table.loc[0, "p_mean"] - 2)))
    assert abs(table.loc[0, "p_mean"] - 2.0) < 0.15
    # the natural-slope domain is the more natural one
    assert table.loc[0, "naturalness"] > table.loc[1, "naturalness"]
    sub = summarize_naturalness({"natural": d1}, n_samples=3, crop=48)
    assert sub.loc[0, "n_images"] == 3

    out = tmp_path / "rep" / "nat.csv"
    assert main(["naturalness", str(d1), str(d2), "--out", str(out), "--crop", "48"]) == 0
    written = pd.read_csv(out)
    pd.testing.assert_frame_equal(written, table, check_dtype=False)
    assert out.with_suffix(".png").stat().st_size > 1000
    assert "natural" in capsys.readouterr().out


def test_missing_or_empty_domain_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingDataError, match="no image files"):
        summarize_naturalness([tmp_path / "empty"])
    with pytest.raises(MissingDataError, match="does not exist"):
        summarize_naturalness([tmp_path / "nope"])
    assert main(["naturalness", str(tmp_path / "nope")]) == 2
