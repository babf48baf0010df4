"""The bad-spec acceptance through the CLI: `harness run BAD [--dry-run]` exits 2 with one line
naming the dotted field, creates no directory and launches nothing; the paper preset's dry run
lists the six variants with the paper's parameter counts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.cli import main
from tests.test_specs import BAD_SPECS, BASE, EXPERIMENTS, PAPER_COUNTS, tree, write_spec


def _bad_spec(tmp_path, case):
    _, replace, overrides, field, parts = case
    text = BASE if replace is None else BASE.replace(replace[0], replace[1], 1)
    path = write_spec(tmp_path, text)
    argv = ["run", str(path)]
    for item in overrides:
        argv += ["--set", item]
    return argv, field, parts


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
@pytest.mark.parametrize("case", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_cli_bad_spec_exits_2_with_one_line_naming_the_field(tmp_path, monkeypatch, capsys, case, dry_run):
    argv, field, parts = _bad_spec(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    status = main(argv + (["--dry-run"] if dry_run else []))
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"harness run: error: {field}: ")
    for part in parts:
        assert part in lines[0]
    assert tree(tmp_path) == before  # no directory under out_root (tmp/runs), nothing launched


def test_cli_bad_spec_exit_status_of_the_real_command(tmp_path):
    argv, field, _ = _bad_spec(tmp_path, BAD_SPECS[0])
    result = subprocess.run([sys.executable, "-m", "harness", *argv], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert field in result.stderr and result.stdout == ""
    assert tree(tmp_path) == ["spec.yaml"]


def test_cli_dry_run_of_paper_cifar10_lists_six_variants_with_paper_counts(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(["run", str(EXPERIMENTS / "paper" / "cifar10.yaml"), "--dry-run"])
    out = capsys.readouterr().out
    assert status == 0
    rows = [line.split() for line in out.splitlines()[2:-1]]
    assert [(r[1], r[5]) for r in rows] == [(name, f"{count:,}") for name, count in PAPER_COUNTS.items()]
    assert list(tmp_path.iterdir()) == []
