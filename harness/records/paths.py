"""The layout of an experiment directory and of a run directory (shared/DESIGN.md).

This is the one module that knows file names. Everything else asks `RunPaths` or
`ExperimentPaths` for a path.

```
<out>/<experiment>/
  experiment.yaml  manifest.jsonl  tune/  report/
  runs/<run_id>/
    spec.yaml  env.json  metrics.jsonl  evals.jsonl  summary.json  done.json
    checkpoints/snapshot-<nimg>.pt  checkpoints/latest
    samples/
```
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Zero-padded so that a plain directory listing is in training order; 10 digits cover 9.9 Gimg.
_SNAPSHOT_DIGITS = 10
_SNAPSHOT_RE = re.compile(r"^snapshot-(\d+)\.pt$")


@dataclass(frozen=True)
class RunPaths:
    """Paths of one training run (`<out>/<experiment>/runs/<run_id>/`)."""

    root: Path

    def __init__(self, run_dir: str | Path):
        object.__setattr__(self, "root", Path(run_dir))

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def spec(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def evals(self) -> Path:
        return self.root / "evals.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def done(self) -> Path:
        """Written once, atomically, when training reached its duration (the launcher reads it)."""
        return self.root / "done.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def latest(self) -> Path:
        """A small text file holding the file name of the newest complete checkpoint."""
        return self.checkpoints / "latest"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    def checkpoint(self, nimg: int) -> Path:
        return self.checkpoints / f"snapshot-{int(nimg):0{_SNAPSHOT_DIGITS}d}.pt"

    def list_checkpoints(self) -> list[tuple[int, Path]]:
        """(nimg, path) of every checkpoint file present, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        found = []
        for path in self.checkpoints.iterdir():
            match = _SNAPSHOT_RE.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        return sorted(found)

    def sample_grid(self, nimg: int, tag: str = "grid") -> Path:
        return self.samples / f"{tag}-{int(nimg):0{_SNAPSHOT_DIGITS}d}.png"


def checkpoint_nimg(path: str | Path) -> int:
    """The images-seen count encoded in a checkpoint file name."""
    match = _SNAPSHOT_RE.match(Path(path).name)
    if not match:
        raise ValueError(f"{path}: not a checkpoint file name (expected snapshot-<nimg>.pt)")
    return int(match.group(1))


@dataclass(frozen=True)
class ExperimentPaths:
    """Paths of one experiment (`<out>/<experiment>/`)."""

    root: Path

    def __init__(self, experiment_dir: str | Path):
        object.__setattr__(self, "root", Path(experiment_dir))

    @property
    def spec(self) -> Path:
        return self.root / "experiment.yaml"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.jsonl"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, run_id: str) -> RunPaths:
        return RunPaths(self.runs / run_id)

    def list_runs(self) -> list[RunPaths]:
        if not self.runs.is_dir():
            return []
        return [RunPaths(p) for p in sorted(self.runs.iterdir()) if p.is_dir()]

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    @property
    def report(self) -> Path:
        return self.root / "report"

    @property
    def figures(self) -> Path:
        return self.report / "figures"

    @property
    def tables(self) -> Path:
        return self.report / "tables"
