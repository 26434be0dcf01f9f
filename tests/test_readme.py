"""The README's set-up commands and the CI script agree."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setup_commands():
    text = (REPO / "README.md").read_text()
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
    import re

    first = [l for l in (REPO / "README.md").read_text().splitlines() if re.match(r"^pip install -e .*\[test\]", l)][0]
    assert first == _setup_commands()[1]


def test_parser_can_be_built_many_times():
    """Grouped subcommands (ingest arrays|rdms|allen) survive rebuilding the parser in one process."""
    import gc

    from neuroxr.cli import build_parser

    for _ in range(30):
        p = build_parser()
        args = p.parse_args(["ingest", "allen", "S", "--cache", "C"])
        assert args.ingest_kind == "allen"
        del p
        gc.collect()
