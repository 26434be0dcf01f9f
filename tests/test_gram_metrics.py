"""Issue 17, one Gram, every comparison: CKA, debiased CKA, encoding RSA (versa), effective
dimensionality, noise ceilings and normalised scores, permutation p-values and bootstrap
intervals, each against an independent reference (numpy on explicit features, scikit-learn,
scipy) on synthetic data, on the simulated observatory and on the shared VISp recordings."""
from __future__ import annotations

import dask
import numpy as np
import pytest
from scipy.spatial.distance import pdist
from scipy.stats import kstest, spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import LeaveOneOut, cross_val_predict
from sklearn.preprocessing import StandardScaler
from test_score import (
    _NoCompute,
    make_data,
    make_features,
    make_responses,
    rsa_reference,
    sklearn_loo_r,
    write_study,
)

from neuroxr import schema as S
from neuroxr.errors import MissingDataError, NeuroxrError
from neuroxr.io import store
from neuroxr.mapping import METRICS, open_scores, score
from neuroxr.mapping.resample import (
    calc_p_values,
    calc_permutation_null,
    draw_image_permutations,
    draw_image_resamples,
)
from neuroxr.mapping.tree import write_scores
from neuroxr.responses import draw_split_keys

NEW = ("cka", "cka-debiased", "versa", "effdim", "ridge-norm", "rsa-norm", "rsa-perm", "cka-perm", "ridge-perm")
FEW = {"n_perm": 60, "n_boot": 25, "n_splits": 3, "ceiling_boot": 20, "seed": 4}


# ----------------------------------------------------------------------------------------------
# independent references: explicit features X (image, feature) and responses Y (image, neuron)
# ----------------------------------------------------------------------------------------------
def cka_reference(X, Y):
    """Kornblith et al. 2019, feature-space form: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    # ||Xc^T Xc||_F = sqrt(sum of the singular values^4) (no p x p matrix for wide layers)
    sx, sy = np.linalg.svd(Xc, compute_uv=False), np.linalg.svd(Yc, compute_uv=False)
    return np.linalg.norm(Yc.T @ Xc) ** 2 / (np.sqrt((sx ** 4).sum()) * np.sqrt((sy ** 4).sum()))


def _hsic_unbiased(K, L):
    """Song et al. 2012, eq. (5), on explicit Gram matrices."""
    n = K.shape[0]
    K, L = K.copy(), L.copy()
    np.fill_diagonal(K, 0)
    np.fill_diagonal(L, 0)
    one = np.ones(n)
    return (np.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ K @ L @ one)) / (n * (n - 3))


def debiased_cka_reference(X, Y):
    K, L = X @ X.T, Y @ Y.T
    return _hsic_unbiased(K, L) / np.sqrt(_hsic_unbiased(K, K) * _hsic_unbiased(L, L))


def effdim_reference(X):
    ev = PCA().fit(X).explained_variance_
    return ev.sum() ** 2 / (ev ** 2).sum()


def versa_reference(X, Ya, alpha=1.0, loo="cross_val_predict"):
    Z = StandardScaler().fit_transform(X)
    if loo == "cross_val_predict":
        P = cross_val_predict(Ridge(alpha=alpha), Z, Ya, cv=LeaveOneOut())
    else:  # RidgeCV's exact leave-one-out predictions (fast for many features)
        P = RidgeCV(alphas=[alpha], store_cv_results=True, scoring="neg_mean_squared_error").fit(Z, Ya).cv_results_[..., 0]
    iu = np.triu_indices(len(X), 1)
    return np.corrcoef((1 - np.corrcoef(P))[iu], (1 - np.corrcoef(Ya))[iu])[0, 1]


def half_means_reference(trials, keys):
    """Explicit split of each (neuron, image)'s finite trials: the first k // 2 in key order form half A."""
    N, n, _ = trials.shape
    a, b = np.full((N, n), np.nan), np.full((N, n), np.nan)
    for j in range(N):
        for i in range(n):
            valid = np.flatnonzero(np.isfinite(trials[j, i]))
            order = valid[np.argsort(keys[i, valid], kind="stable")]
            k = len(order)
            if k >= 2:
                a[j, i] = trials[j, i, order[:k // 2]].mean()
                b[j, i] = trials[j, i, order[k // 2:]].mean()
    return a, b


def sb(r):
    return 2 * r / (1 + r)


def neuron_ceiling_reference(trials, n_splits, seed, boots):
    N, n, T = trials.shape
    keys = draw_split_keys(n_splits, n, T, seed)
    halves = [half_means_reference(trials, keys[s]) for s in range(n_splits)]
    ceil, lo, hi = np.empty(N), np.empty(N), np.empty(N)
    for j in range(N):
        def rel(idx, j=j):
            vals = []
            for a, b in halves:
                x, y = a[j, idx], b[j, idx]
                ok = np.isfinite(x) & np.isfinite(y)
                vals.append(sb(np.corrcoef(x[ok], y[ok])[0, 1]))
            return np.mean(vals)
        full = rel(np.arange(n))
        ceil[j] = np.sqrt(full) if full > 0 else np.nan  # no reliable signal: no ceiling
        draws = [np.sqrt(max(rel(idx), 0.0)) for idx in boots]
        lo[j], hi[j] = np.percentile(draws, [2.5, 97.5])
    return ceil, lo, hi


def rdm_ceiling_reference(trials, n_splits, seed, boots):
    _, n, T = trials.shape
    keys = draw_split_keys(n_splits, n, T, seed)
    rdms = []
    for s in range(n_splits):
        a, b = half_means_reference(trials, keys[s])
        rdms.append((1 - np.corrcoef(a.T), 1 - np.corrcoef(b.T)))

    def rel(idx):
        i, j = np.triu_indices(n, 1)
        keep = idx[i] != idx[j]
        return np.mean([sb(np.corrcoef(ra[idx[i], idx[j]][keep], rb[idx[i], idx[j]][keep])[0, 1])
                        for ra, rb in rdms])
    draws = [np.sqrt(max(rel(idx), 0.0)) for idx in boots]
    return np.sqrt(rel(np.arange(n))), *np.percentile(draws, [2.5, 97.5])


def rdm_of(X):
    """1 - Pearson between the rows (images), exactly symmetric (one value per pair of images)."""
    R = 1 - np.corrcoef(X)
    return 0.5 * (R + R.T)


def permutation_reference(stat, X, Ya, perms):
    """Null of ``stat(X[perm], Ya)`` over the permutations, from the explicit features."""
    return np.array([stat(X[p], Ya) for p in perms])


def p_reference(obs, null):
    return (1 + np.sum(null >= obs)) / (1 + len(null))


def rsa_boot_reference(X, Ya, boots):
    out = []
    for idx in boots:
        i, j = np.triu_indices(len(idx), 1)
        keep = idx[i] != idx[j]
        a, b = rdm_of(X)[idx[i], idx[j]][keep], rdm_of(Ya)[idx[i], idx[j]][keep]
        out.append(np.corrcoef(a, b)[0, 1])
    return np.percentile(out, [2.5, 97.5])


def cka_boot_reference(X, Ya, boots):
    out = []
    for idx in boots:
        Xb, Yb = X[idx] - X[idx].mean(0), Ya[idx] - Ya[idx].mean(0)
        K, L = Xb @ Xb.T, Yb @ Yb.T
        M = (idx[:, None] != idx[None, :]) | np.eye(len(idx), dtype=bool)
        out.append((K * L * M).sum() / np.sqrt((K * K * M).sum() * (L * L * M).sum()))
    return np.percentile(out, [2.5, 97.5])


def make_trials(Y, seed=3, T=6):
    rng = np.random.default_rng(seed)
    trials = (Y.T[:, :, None] + 0.8 * rng.standard_normal((Y.shape[1], Y.shape[0], T))).astype(np.float32)
    trials[:3, :4, T - 1] = np.nan  # fewer trials for some images
    return trials


# ----------------------------------------------------------------------------------------------
# registry and synthetic data
# ----------------------------------------------------------------------------------------------
def test_new_metrics_are_registered():
    want = {"cka": ("cka", "areas", ("layer", "area")), "cka-debiased": ("cka_debiased", "areas", ("layer", "area")),
            "versa": ("versa_r", "areas", ("layer", "area")), "effdim": ("effective_dim", "layers", ("layer",)),
            "ridge-norm": ("ridge_r_norm", "/", ("layer", "neuron")), "rsa-norm": ("rsa_r_norm", "areas", ("layer", "area")),
            "rsa-perm": ("rsa_p", "areas", ("layer", "area")), "cka-perm": ("cka_p", "areas", ("layer", "area")),
            "ridge-perm": ("ridge_p", "/", ("layer", "neuron"))}
    for name, (var, group, dims) in want.items():
        m = METRICS[name]
        assert (m.variable, m.group, m.dims) == (var, group, dims), name
    assert not METRICS["effdim"].needs_responses
    assert [m for m in NEW if not METRICS[m].ranked] == ["effdim", "rsa-perm", "cka-perm", "ridge-perm"]


def test_cka_versa_effdim_match_references():
    Xs, Y = make_data(seed=11, N=16)
    resp = make_responses(Y)
    tree = score.score_layers(make_features(Xs), resp, ("cka", "cka-debiased", "versa", "effdim"),
                              neuron_chunk=5, layer_chunk=2).compute()
    areas = tree["areas"]
    assert areas.cka.dims == ("layer", "area") and tree["layers"].effective_dim.dims == ("layer",)
    for k, X in enumerate(Xs.values()):
        np.testing.assert_allclose(float(tree["layers"].effective_dim[k]), effdim_reference(X), rtol=1e-10)
        for a in ("VISp", "VISl"):
            Ya = Y[:, resp.area.values == a]
            got = areas.sel(area=a).isel(layer=k)
            np.testing.assert_allclose(float(got.cka), cka_reference(X, Ya), atol=1e-10)
            np.testing.assert_allclose(float(got.cka_debiased), debiased_cka_reference(X, Ya), atol=1e-10)
            np.testing.assert_allclose(float(got.versa_r), versa_reference(X, Ya), atol=1e-8)


def test_versa_with_an_alpha_grid_uses_each_neurons_alpha_and_spearman():
    Xs, Y = make_data(seed=12, N=10)
    resp = make_responses(Y)
    grid = (0.1, 10.0, 1000.0)
    tree = score.score_layers(make_features(Xs), resp, ("versa", "ridge"), alphas=grid, rsa_method="spearman",
                              neuron_chunk=3).compute()
    X = Xs["l1"]
    Z = StandardScaler().fit_transform(X)
    for a in ("VISp", "VISl"):
        cols = np.flatnonzero(resp.area.values == a)
        P = np.column_stack([cross_val_predict(Ridge(alpha=float(tree.ridge_alpha[1, j])), Z, Y[:, j], cv=LeaveOneOut())
                             for j in cols])
        iu = np.triu_indices(Y.shape[0], 1)
        want = spearmanr((1 - np.corrcoef(P))[iu], (1 - np.corrcoef(Y[:, cols]))[iu]).statistic
        np.testing.assert_allclose(float(tree["areas"].versa_r.sel(area=a)[1]), want, atol=1e-8)


def test_ridge_and_versa_share_the_ridge_operators():
    Xs, Y = make_data(seed=13)
    tree = score.score_layers(make_features(Xs), make_responses(Y), ("ridge", "versa"), layer_chunk=1)
    keys = {k for node in tree.subtree for v in node.data_vars.values() for k in dict(v.data.__dask_graph__())}
    ops = {k for k in keys if "nxr-ridge-operators" in str(k[0] if isinstance(k, tuple) else k)}
    assert len(ops) == len(Xs)  # one operator task per layer chunk, used by both metrics


def test_ceilings_and_normalised_scores_match_references():
    Xs, Y = make_data(seed=14, N=12)
    trials = make_trials(Y)
    resp = make_responses(Y, trials=trials)
    tree = score.score_layers(make_features(Xs), resp, ("ridge", "rsa", "ridge-norm", "rsa-norm"),
                              neuron_chunk=5, resample_options=FEW).compute()
    boots = draw_image_resamples(Y.shape[0], FEW["ceiling_boot"], FEW["seed"])
    ceil, lo, hi = neuron_ceiling_reference(trials.astype(np.float64), FEW["n_splits"], FEW["seed"], boots)
    np.testing.assert_allclose(tree.ridge_r_ceiling.values, ceil, atol=1e-8)
    np.testing.assert_allclose(tree.ridge_r_ceiling_low.values, lo, atol=1e-8)
    np.testing.assert_allclose(tree.ridge_r_ceiling_high.values, hi, atol=1e-8)
    np.testing.assert_allclose(tree.ridge_r_norm.values, tree.ridge_r.values / ceil[None], atol=1e-8)
    areas = tree["areas"]
    for a in ("VISp", "VISl"):
        want = rdm_ceiling_reference(trials[resp.area.values == a].astype(np.float64), FEW["n_splits"], FEW["seed"],
                                     boots)
        got = [float(areas[v].sel(area=a)) for v in ("rsa_r_ceiling", "rsa_r_ceiling_low", "rsa_r_ceiling_high")]
        np.testing.assert_allclose(got, want, atol=1e-8)
        np.testing.assert_allclose(areas.rsa_r_norm.sel(area=a).values, areas.rsa_r.sel(area=a).values / want[0],
                                   atol=1e-8)
    # the neuron ceiling squared is the split-half reliability of neuroxr.responses (same splits)
    from neuroxr.responses import calc_splithalf_reliability

    rel = calc_splithalf_reliability(resp.trials, n_splits=FEW["n_splits"], seed=FEW["seed"]).values
    np.testing.assert_allclose(tree.ridge_r_ceiling.values ** 2, rel, atol=1e-10)


def test_ceilings_need_trials():
    Xs, Y = make_data()
    for m in ("ridge-norm", "rsa-norm"):
        with pytest.raises(MissingDataError, match="trials"):
            score.score_layers(make_features(Xs), make_responses(Y), (m,))


def test_permutation_and_bootstrap_match_references():
    Xs, Y = make_data(seed=15, N=16)
    resp = make_responses(Y)
    tree = score.score_layers(make_features(Xs), resp, ("rsa", "cka", "rsa-perm", "cka-perm"), layer_chunk=2,
                              resample_options=FEW).compute()
    n = Y.shape[0]
    perms = draw_image_permutations(n, FEW["n_perm"], FEW["seed"])
    boots = draw_image_resamples(n, FEW["n_boot"], FEW["seed"])
    areas = tree["areas"]
    for a in ("VISp", "VISl"):
        Ya = Y[:, resp.area.values == a]
        for stat, name in ((rsa_reference, "rsa"), (cka_reference, "cka")):
            nulls = {k: permutation_reference(stat, X, Ya, perms) for k, X in Xs.items()}
            top = np.max(np.stack(list(nulls.values())), axis=0)  # max-statistic over the layers
            for i, (k, X) in enumerate(Xs.items()):
                obs = stat(X, Ya)
                got = areas.sel(area=a).isel(layer=i)
                np.testing.assert_allclose(float(got[f"{name}_p"]), p_reference(obs, nulls[k]), atol=1e-12)
                np.testing.assert_allclose(float(got[f"{name}_p_fwer"]), p_reference(obs, top), atol=1e-12)
                ci = (rsa_boot_reference if name == "rsa" else cka_boot_reference)(X, Ya, boots)
                np.testing.assert_allclose([float(got[f"{name}_ci_low"]), float(got[f"{name}_ci_high"])], ci,
                                           atol=1e-8)


def test_spearman_permutation_and_bootstrap_match_scipy():
    Xs, Y = make_data(seed=16, N=10)
    resp = make_responses(Y)
    tree = score.score_layers(make_features(Xs), resp, ("rsa-perm",), rsa_method="spearman",
                              resample_options=FEW).compute()
    n = Y.shape[0]
    perms = draw_image_permutations(n, FEW["n_perm"], FEW["seed"])
    boots = draw_image_resamples(n, FEW["n_boot"], FEW["seed"])
    i, j = np.triu_indices(n, 1)
    for a in ("VISp", "VISl"):
        Ya = Y[:, resp.area.values == a]
        for k, X in enumerate(Xs.values()):
            def stat(Xp, Ya):
                return spearmanr(pdist(Xp, "correlation"), pdist(Ya, "correlation")).statistic
            got = tree["areas"].sel(area=a).isel(layer=k)
            np.testing.assert_allclose(float(got.rsa_p), p_reference(stat(X, Ya), permutation_reference(stat, X, Ya, perms)),
                                       atol=1e-12)
            draws = []
            for idx in boots:
                keep = idx[i] != idx[j]
                draws.append(spearmanr(rdm_of(X)[idx[i], idx[j]][keep], rdm_of(Ya)[idx[i], idx[j]][keep]).statistic)
            np.testing.assert_allclose([float(got.rsa_ci_low), float(got.rsa_ci_high)],
                                       np.percentile(draws, [2.5, 97.5]), atol=1e-8)


@pytest.mark.parametrize("alphas", [(1.0,), (0.1, 10.0)])
def test_ridge_permutation_matches_refits_on_permuted_features(alphas):
    """The null reuses one eigendecomposition per layer; the reference refits scikit-learn on X[perm]."""
    Xs, Y = make_data(seed=17, N=7)
    opts = dict(FEW, n_perm=25)
    tree = score.score_layers(make_features(Xs), make_responses(Y), ("ridge", "ridge-perm"), alphas=alphas,
                              neuron_chunk=3, resample_options=opts).compute()
    perms = draw_image_permutations(Y.shape[0], opts["n_perm"], opts["seed"])

    def loo_r(X):  # each neuron with its own alpha by leave-one-out error, as RidgeCV(alpha_per_target)
        Z = StandardScaler().fit_transform(X)
        m = RidgeCV(alphas=list(alphas), alpha_per_target=True, store_cv_results=True, scoring="neg_mean_squared_error")
        pred = m.fit(Z, Y).cv_results_
        pred = pred[..., 0] if len(alphas) == 1 else np.stack([pred[:, j, list(alphas).index(a)]
                                                               for j, a in enumerate(m.alpha_)], axis=1)
        return np.array([np.corrcoef(pred[:, j], Y[:, j])[0, 1] for j in range(Y.shape[1])])

    obs = np.stack([loo_r(X) for X in Xs.values()])  # (layer, neuron)
    null = np.stack([[loo_r(X[p]) for p in perms] for X in Xs.values()])  # (layer, perm, neuron)
    np.testing.assert_allclose(tree.ridge_r.values, obs, atol=1e-8)
    want = (1 + (null >= obs[:, None]).sum(1)) / (1 + len(perms))
    want_fwer = (1 + (null.max(0)[None] >= obs[:, None]).sum(1)) / (1 + len(perms))
    np.testing.assert_allclose(tree.ridge_p.values, want, atol=1e-12)
    np.testing.assert_allclose(tree.ridge_p_fwer.values, want_fwer, atol=1e-12)


def test_permutation_draws_are_permutations_and_p_values_are_never_zero():
    perms = draw_image_permutations(20, 50, seed=1)
    assert (np.sort(perms, axis=1) == np.arange(20)).all()
    np.testing.assert_array_equal(perms, draw_image_permutations(20, 50, seed=1))
    assert calc_p_values(np.array([10.0]), np.zeros((1, 99)))[0] == pytest.approx(0.01)


def test_new_metrics_build_lazily_and_write_lazily(tmp_path):
    Xs, Y = make_data()
    root = write_study(tmp_path / "st", {"m": make_features(Xs)}, Y, trials=make_trials(Y))
    feats = store.open_dataset(root / "features" / "m.zarr")
    resp = store.open_dataset(root / S.RESPONSES_STORE)
    sched = _NoCompute()
    with dask.config.set(scheduler=sched):
        tree = score.score_layers(feats, resp, NEW, resample_options=FEW)
        delayed, tmp = write_scores(tree, tmp_path / "out.zarr", compute=False)
    assert sched.calls == 0
    assert all(isinstance(v.data, dask.array.Array) for node in tree.subtree for v in node.data_vars.values())
    for m in NEW:
        assert tree.nxr.get(METRICS[m].variable).dims == METRICS[m].dims
    dask.compute(delayed)
    written = open_scores(tmp)
    np.testing.assert_allclose(written["areas"].cka.values, tree["areas"].cka.values, rtol=1e-6)


def test_resampling_settings_are_recorded_and_checked(tmp_path):
    from neuroxr.errors import SettingsMismatchError

    Xs, Y = make_data()
    root = write_study(tmp_path / "st", {"m": make_features(Xs)}, Y)
    path = score.score_study(root, metrics=("cka", "cka-perm"), resample_options=FEW)
    assert store.read_settings(open_scores(path))["resample"] == FEW
    with pytest.raises(SettingsMismatchError, match="resample"):
        score.score_study(root, metrics=("cka", "cka-perm"), resample_options=dict(FEW, seed=5))
    with pytest.raises(NeuroxrError, match="n_perm"):
        score.score_study(root, metrics=("cka-perm",), resample_options={"n_perm": 0}, overwrite=True)


# ----------------------------------------------------------------------------------------------
# the simulated observatory: extracted features of the generating network, every new metric
# ----------------------------------------------------------------------------------------------
SIM = {"seed": 3, "n_images": 60, "neurons_per_area": 40, "n_trials": 12, "image_size": 32, "model": "alexnet"}
SIM_LAYERS = ("features.4", "features.12", "classifier.5", "classifier.6")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    from neuroxr.features.extract import extract_features
    from neuroxr.features.hooks import iter_layer_activations
    from neuroxr.features.zoo import load_model
    from neuroxr.simulate import read_simulation, simulate_study

    root = tmp_path_factory.mktemp("sim17") / "st"
    simulate_study(root, **SIM)
    extract_features(root, ["alexnet"], weights="random", progress=False)
    px = store.open_dataset(root / S.STIMULI_STORE)["pixels"].values
    acts = {name: a.reshape(len(a), -1).astype(np.float64)
            for name, _, a in iter_layer_activations(load_model("alexnet", "random", seed=0), px) if name in SIM_LAYERS}
    return root, acts, read_simulation(root)


def test_simulator_every_metric_matches_references(sim):
    root, acts, _ = sim
    feats = store.open_dataset(root / "features" / "alexnet.zarr")
    resp = store.open_dataset(root / S.RESPONSES_STORE).load()
    opts = dict(FEW, n_perm=30, n_boot=10)
    tree = score.score_layers(feats, resp, ("cka", "cka-debiased", "versa", "effdim", "rsa-perm", "cka-perm"),
                              resample_options=opts).compute()
    Y = resp["mean"].values.T.astype(np.float64)
    n = Y.shape[0]
    perms = draw_image_permutations(n, opts["n_perm"], opts["seed"])
    boots = draw_image_resamples(n, opts["n_boot"], opts["seed"])
    names = list(tree.layer_name.values)
    for layer, X in acts.items():
        k = names.index(layer)
        np.testing.assert_allclose(float(tree["layers"].effective_dim[k]), effdim_reference(X), rtol=1e-8)
        for a in ("VISp", "VISam"):
            Ya = Y[:, resp.area.values == a]
            got = tree["areas"].sel(area=a).isel(layer=k)
            np.testing.assert_allclose(float(got.cka), cka_reference(X, Ya), atol=1e-8)
            np.testing.assert_allclose(float(got.cka_debiased), debiased_cka_reference(X, Ya), atol=1e-8)
            np.testing.assert_allclose(float(got.versa_r), versa_reference(X, Ya, loo="ridgecv"), atol=1e-8)
            if X.shape[1] <= 10_000:  # explicit permuted / resampled features: the smaller layers
                for stat, name, boot in ((rsa_reference, "rsa", rsa_boot_reference),
                                         (cka_reference, "cka", cka_boot_reference)):
                    null = permutation_reference(stat, X, Ya, perms)
                    np.testing.assert_allclose(float(got[f"{name}_p"]), p_reference(stat(X, Ya), null), atol=1e-12)
                    np.testing.assert_allclose([float(got[f"{name}_ci_low"]), float(got[f"{name}_ci_high"])],
                                               boot(X, Ya, boots), atol=1e-8)


def test_simulator_ceilings_match_references(sim):
    root, _, _ = sim
    feats = store.open_dataset(root / "features" / "alexnet.zarr").isel(layer=[4, 17])
    resp = store.open_dataset(root / S.RESPONSES_STORE).load()
    tree = score.score_layers(feats, resp, ("ridge", "rsa", "ridge-norm", "rsa-norm"), resample_options=FEW).compute()
    trials = resp.trials.values.astype(np.float64)
    boots = draw_image_resamples(resp.sizes["image"], FEW["ceiling_boot"], FEW["seed"])
    some = np.arange(0, trials.shape[0], 24)  # explicit loops: every 24th neuron
    ceil, lo, hi = neuron_ceiling_reference(trials[some], FEW["n_splits"], FEW["seed"], boots)
    np.testing.assert_allclose(tree.ridge_r_ceiling.values[some], ceil, atol=1e-8)
    np.testing.assert_allclose(tree.ridge_r_ceiling_low.values[some], lo, atol=1e-8)
    np.testing.assert_allclose(tree.ridge_r_ceiling_high.values[some], hi, atol=1e-8)
    want = rdm_ceiling_reference(trials[resp.area.values == "VISp"], FEW["n_splits"], FEW["seed"], boots)
    got = [float(tree["areas"][v].sel(area="VISp")) for v in ("rsa_r_ceiling", "rsa_r_ceiling_low", "rsa_r_ceiling_high")]
    np.testing.assert_allclose(got, want, atol=1e-8)
    # the ceiling tracks the planted reliability; normalised scores are r / ceiling
    c = tree.ridge_r_ceiling.values
    ok = np.isfinite(c)
    assert ok.mean() > 0.9 and np.corrcoef(c[ok] ** 2, resp.target_reliability.values[ok])[0, 1] > 0.9
    np.testing.assert_allclose(tree.ridge_r_norm.values, tree.ridge_r.values / c[None], atol=1e-12)


def test_simulator_driving_layer_is_significant_and_shuffles_are_uniform(sim):
    root, _, truth = sim
    feats = store.open_dataset(root / "features" / "alexnet.zarr")
    resp = store.open_dataset(root / S.RESPONSES_STORE).load()
    opts = dict(FEW, n_perm=1000, n_boot=50)
    tree = score.score_layers(feats, resp, ("rsa", "cka", "rsa-perm", "cka-perm"), resample_options=opts).compute()
    layer = truth["area_layers"]["VISp"]["layer_name"]
    k = list(tree.layer_name.values).index(layer)
    got = tree["areas"].sel(area="VISp").isel(layer=k)
    for name in ("rsa_p", "cka_p", "rsa_p_fwer", "cka_p_fwer"):
        assert float(got[name]) < 0.01, (name, float(got[name]))
    visp = resp.isel(neuron=np.flatnonzero(resp.area.values == "VISp"))
    ridge = score.score_layers(feats, visp, ("ridge-perm",), resample_options=dict(FEW, n_perm=200)).compute()
    p_visp = ridge.ridge_p.isel(layer=k).values
    # per neuron (40, reliabilities spread over 0..1; 5% expected by chance): most are significant,
    # about half after the correction over the 18 layers
    assert (p_visp < 0.05).mean() > 0.6 and (ridge.ridge_p_fwer.isel(layer=k).values < 0.05).mean() > 0.4
    # shuffled-response control: each layer against responses with the images shuffled (its own
    # shuffle and its own permutations): the p-values over the layers are uniform
    from neuroxr.mapping.graph import neural_rdms
    from neuroxr.rsa import calc_rdm

    feats = feats.load()
    model = calc_rdm(feats.gram.values, "gram", feature_sum=feats.feature_sum.values,
                     n_features=feats.n_features.values)
    Y = resp["mean"].values.T.astype(np.float64)
    rng = np.random.default_rng(0)
    ps = []
    for rep in range(6):
        for k in range(model.shape[0]):
            Ys = Y[rng.permutation(Y.shape[0])]
            neural = neural_rdms(dask.array.from_array(Ys), resp.area.values, list(S.AREAS)).compute()
            obs, null = calc_permutation_null("rsa", model[k:k + 1], neural[:1], draw_image_permutations(
                Y.shape[0], 199, seed=1000 * rep + k))
            ps.append(calc_p_values(obs, null)[0, 0])
    assert len(ps) == 6 * 18
    assert kstest(ps, "uniform").pvalue > 0.01


def test_cli_scores_rank_and_report_with_the_new_metrics(sim, tmp_path, capsys):
    import shutil

    from neuroxr.cli import main
    from neuroxr.stats import rank_models
    from neuroxr.stats.dimensionality import (
        correlate_dimensionality,
        dimensionality_table,
    )

    root, _, _ = sim
    study = tmp_path / "st"
    shutil.copytree(root, study)
    args = ["score", str(study), "--no-progress"]
    for m in ("ridge", "rsa", "cka", "versa", "effdim", "ridge-norm", "rsa-norm"):
        args += ["--metric", m]
    assert main(args) == 0, capsys.readouterr().err
    sc = open_scores(study / S.SCORES_STORE)
    assert sc["areas"].cka.dims == ("layer", "area") and sc["layers"].effective_dim.dims == ("layer",)
    assert sc.ridge_r_ceiling.dims == ("neuron",) and sc["areas"].versa_r.sizes["area"] == 6
    S.validate_scores(sc)
    ranks = rank_models(sc, n_boot=20)
    assert {"cka", "versa", "ridge-norm", "rsa-norm"} <= set(ranks.metric)
    assert "effdim" not in set(ranks.metric)
    assert main(["rank", str(study)]) == 0, capsys.readouterr().err
    table = dimensionality_table(sc)
    assert len(table) == 18 and {"effective_dim", "ridge", "rsa", "cka", "versa"} <= set(table.columns)
    want = sc["areas"].cka.mean("area").values
    np.testing.assert_allclose(table["cka"].to_numpy(float), want, rtol=1e-6)
    np.testing.assert_allclose(table["effective_dim"].to_numpy(float), sc["layers"].effective_dim.values, rtol=0)
    cor = correlate_dimensionality(table)
    row = cor[(cor.variant == "all") & (cor.metric == "ridge")].iloc[0]
    ref = spearmanr(table["effective_dim"], table["ridge"])
    np.testing.assert_allclose([row.rho, row.p], [ref.statistic, ref.pvalue], rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# the shared VISp recordings (no trials: ceilings are checked on the simulator)
# ----------------------------------------------------------------------------------------------
def test_real_allen_visp_matches_references(allen_visp_npz):
    d = np.load(allen_visp_npz)
    px = d["images"].reshape(len(d["images"]), -1).astype(np.float64)
    rng = np.random.default_rng(0)
    Xs = {"pixels": px, "relu": np.maximum(px @ rng.standard_normal((px.shape[1], 300)) / 30 - 50, 0)}
    Y = d["responses"].astype(np.float64)
    feats = make_features(Xs, model="pixels", family="baseline", images=d["image_index"])
    resp = make_responses(Y, areas=("VISp",), images=d["image_index"])
    opts = dict(FEW, n_perm=40, n_boot=10)
    tree = score.score_layers(feats, resp, ("cka", "cka-debiased", "versa", "effdim", "rsa-perm", "cka-perm"),
                              resample_options=opts).compute()
    n = Y.shape[0]
    perms = draw_image_permutations(n, opts["n_perm"], opts["seed"])
    boots = draw_image_resamples(n, opts["n_boot"], opts["seed"])
    for k, X in enumerate(Xs.values()):
        got = tree["areas"].sel(area="VISp").isel(layer=k)
        np.testing.assert_allclose(float(tree["layers"].effective_dim[k]), effdim_reference(X), rtol=1e-8)
        np.testing.assert_allclose(float(got.cka), cka_reference(X, Y), atol=1e-8)
        np.testing.assert_allclose(float(got.cka_debiased), debiased_cka_reference(X, Y), atol=1e-8)
        np.testing.assert_allclose(float(got.versa_r), versa_reference(X, Y), atol=1e-8)
        for stat, name, boot in ((rsa_reference, "rsa", rsa_boot_reference), (cka_reference, "cka", cka_boot_reference)):
            null = permutation_reference(stat, X, Y, perms)
            np.testing.assert_allclose(float(got[f"{name}_p"]), p_reference(stat(X, Y), null), atol=1e-12)
            np.testing.assert_allclose([float(got[f"{name}_ci_low"]), float(got[f"{name}_ci_high"])],
                                       boot(X, Y, boots), atol=1e-8)
    with pytest.raises(MissingDataError, match="trials"):
        score.score_layers(feats, resp, ("ridge-norm",))
    # ridge permutation p-values against scikit-learn refits on permuted features (a few neurons)
    some = resp.isel(neuron=slice(0, 12))
    ridge = score.score_layers(feats, some, ("ridge-perm",), resample_options=dict(FEW, n_perm=20)).compute()
    perms = draw_image_permutations(n, 20, FEW["seed"])
    obs = np.stack([sklearn_loo_r(X, Y[:, :12], 1.0) for X in Xs.values()])
    null = np.stack([[sklearn_loo_r(X[p], Y[:, :12], 1.0) for p in perms] for X in Xs.values()])
    np.testing.assert_allclose(ridge.ridge_p.values, (1 + (null >= obs[:, None]).sum(1)) / 21, atol=1e-12)
    np.testing.assert_allclose(ridge.ridge_p_fwer.values, (1 + (null.max(0)[None] >= obs[:, None]).sum(1)) / 21,
                               atol=1e-12)
