"""The README's examples run as written (every ```python block against a small demo study, the
`ingest arrays` / `select` commands on the shared recordings they name); its set-up commands and
the CI script agree."""
from __future__ import annotations

import ast
import gc
import re
import shlex
import shutil

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import REPO
from neuroxr import pipeline
from neuroxr.cli import build_parser, main
from neuroxr.io.store import open_dataset

README = REPO / "README.md"
SHARED_NPZ = "../shared/data/allen_visp/allen_visp.npz"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def neuroxr_commands(text: str) -> list[list[str]]:
    """Every `neuroxr ...` line of the ```bash blocks (continuations joined, comments dropped), as argv."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("neuroxr "):
                out.append(shlex.split(line)[1:])
    return out


def run_block(code: str, name: str, ns: dict) -> dict:
    """Run ``code`` statement by statement in ``ns``; the value of each expression statement is kept,
    keyed by its source text."""
    values = {}
    for node in ast.parse(code).body:
        src = ast.get_source_segment(code, node)
        if isinstance(node, ast.Expr):
            values[src] = eval(compile(ast.Expression(node.value), name, "eval"), ns)
        else:
            exec(compile(ast.Module([node], type_ignores=[]), name, "exec"), ns)
    return values


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A directory holding the small demo study under the README's name, ``neuroxr-demo``."""
    d = tmp_path_factory.mktemp("readme")
    pipeline.run_demo(d / "neuroxr-demo", size="small", log=lambda m: None)
    return d


@pytest.fixture(scope="module")
def readme_values(demo_dir):
    """The value of every expression line of the README's python blocks, run in the demo's directory."""
    cwd = pytest.MonkeyPatch()
    cwd.chdir(demo_dir)
    try:
        blocks = python_blocks(README.read_text(encoding="utf-8"))
        assert len(blocks) >= 2
        values = {}
        for i, code in enumerate(blocks):
            values.update(run_block(code, f"README.md python block {i + 1}", {}))
        return values
    finally:
        cwd.undo()


def _line(values, start):
    found = [k for k in values if k.startswith(start)]
    assert len(found) == 1, (start, list(values))
    return values[found[0]]


def test_every_python_line_of_the_readme_runs(readme_values):
    assert len(readme_values) >= 5


def test_readme_max_table_matches_pandas(readme_values, demo_dir):
    """The README's Max table: per model variant and area, the max over layers of the area mean,
    so trained and random weights of one model are two rows."""
    got = _line(readme_values, 'st.scores.ridge_r.groupby("area").mean()')
    assert got.dims == ("variant", "area")
    root = xr.open_zarr(demo_dir / "neuroxr-demo" / "scores.zarr")  # plain xarray: the root group
    r = root.ridge_r.transpose("layer", "neuron")
    df = pd.DataFrame(np.asarray(r.values, float), index=np.asarray(r.variant.values).astype(str),
                      columns=np.asarray(r.area.values).astype(str))
    want = df.T.groupby(level=0).mean().T.groupby(level=0).max()  # (layer, area) means, max per variant
    want = xr.DataArray(want.to_numpy(), dims=("variant", "area"),
                        coords={"variant": want.index.to_numpy(), "area": want.columns.to_numpy()})
    xr.testing.assert_allclose(got.reset_coords(drop=True).sortby(["variant", "area"]),
                               want.sortby(["variant", "area"]).astype(got.dtype), rtol=1e-6)


def test_readme_rsa_line_selects_an_area_by_name(readme_values, demo_dir):
    got = _line(readme_values, 'st.scores["areas"].rsa_r.sel(area="VISp")')
    store = demo_dir / "neuroxr-demo" / "scores.zarr"
    areas, root = xr.open_zarr(store, group="areas"), xr.open_zarr(store)  # plain xarray, group by group
    want = areas.rsa_r.isel(area=list(np.asarray(areas.area.values).astype(str)).index("VISp"))
    if "layer" not in want.indexes:  # stored once, at the root
        want = want.assign_coords(layer=root["layer"].values)
    xr.testing.assert_allclose(got.load().reset_coords(drop=True), want.load().reset_coords(drop=True))


def test_readme_ingest_arrays_then_select_runs_on_the_shared_data(allen_visp_npz, tmp_path, capsys):
    """The README's `ingest arrays` example and its `select` example, as written, on the shared
    recordings (trial means only)."""
    cmds = neuroxr_commands(README.read_text(encoding="utf-8"))
    ingest = next(c for c in cmds if c[:2] == ["ingest", "arrays"])
    select = next(c for c in cmds if c[0] == "select")
    study = str(tmp_path / "study")

    def argv(cmd):
        return [study if a == "STUDY" else a.replace(SHARED_NPZ, str(allen_visp_npz)) for a in cmd]

    assert main(argv(ingest)) == 0
    assert main(argv(select)) == 0, capsys.readouterr().err
    n_neurons = np.load(allen_visp_npz)["responses"].shape[1]
    sel = open_dataset(tmp_path / "study" / "responses.zarr")["selected"]
    assert sel.dtype == bool and int(sel.sum()) == n_neurons  # every neuron is Cux2-CreERT2: excitatory


def test_readme_select_with_trial_criteria_runs_on_a_study_with_trials(demo_dir, tmp_path, capsys):
    """The README's `select` with reliability, running and image selectivity, on a simulated
    study (trials, p_run_mod, p_image)."""
    cmds = neuroxr_commands(README.read_text(encoding="utf-8"))
    full = next(c for c in cmds if c[0] == "select" and "--exclude-running" in c)
    study = tmp_path / "sim"
    shutil.copytree(demo_dir / "neuroxr-demo", study)
    assert main([str(study) if a == "STUDY" else a for a in full]) == 0, capsys.readouterr().err
    ds = open_dataset(study / "responses.zarr")
    keep = ((ds.splithalf_r >= 0.8) & (ds.p_run_mod > 0.05) & (ds.p_image < 0.05)).values
    assert int(ds["selected"].sum()) <= int(keep.sum())


# ---------------------------------------------------------------------------------- set-up and CI
def _setup_commands():
    text = README.read_text()
    block = text.split("```", 2)[1].strip().splitlines()
    return [line.strip() for line in block if line.strip()]


def test_readme_has_exactly_two_setup_commands():
    cmds = _setup_commands()
    assert len(cmds) == 2, cmds
    assert cmds[0].startswith("pip install") and cmds[0].endswith("neuroxr demo")
    assert cmds[1].startswith("pip install -e '.[test]'") and "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert "grep -m1 -E '^pip install -e .*\\[test\\]' README.md" in ci
    first = [l for l in README.read_text().splitlines() if re.match(r"^pip install -e .*\[test\]", l)][0]
    assert first == _setup_commands()[1]


def test_parser_can_be_built_many_times():
    """Grouped subcommands (ingest arrays|rdms|allen) survive rebuilding the parser in one process."""
    for _ in range(30):
        p = build_parser()
        args = p.parse_args(["ingest", "allen", "S", "--cache", "C"])
        assert args.ingest_kind == "allen"
        del p
        gc.collect()


def test_every_readme_command_parses():
    """Every `neuroxr ...` line of the README's bash blocks is a valid command line (options that
    exist, values they accept); lines with placeholders (`[...]`, `A|B`, `...`) are checked as far
    as the placeholder-free ones go."""
    cmds = neuroxr_commands(README.read_text(encoding="utf-8"))
    plain = [c for c in cmds if not any("[" in a or "|" in a or "..." in a for a in c)]
    assert len(plain) >= 20, plain
    parser = build_parser()
    for cmd in plain:
        try:
            parser.parse_args(cmd)
        except SystemExit:  # argparse's own error went to stderr
            pytest.fail(f"README command does not parse: neuroxr {shlex.join(cmd)}")
