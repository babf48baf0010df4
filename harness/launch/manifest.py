"""manifest.jsonl: the append-only log of what was submitted where, one line per event.

A line is written when a run is queued, when its job is submitted (with the executor's job id
and the submitit log folder) and when the launcher sees it end. The last line of a run_id is its
current entry. Runs themselves are found by run_id (the directory name), so relaunching never
creates a second directory for a job.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.records import ExperimentPaths, append_jsonl, read_jsonl


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class JobRecord:
    """One job of an experiment as the launcher and `harness status` see it."""

    run_id: str
    variant: str
    seed: int
    overrides: dict[str, Any]
    executor: str
    run_dir: Path
    job_id: str | None = None
    state: str = "not-submitted"
    submitted_at: str | None = None
    log_folder: str | None = None
    nimg: int | None = None
    total_nimg: int | None = None
    metric: str = ""
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def manifest_line(self, event: str) -> dict[str, Any]:
        return {"run_id": self.run_id, "variant": self.variant, "seed": self.seed,
                "overrides": self.overrides, "executor": self.executor, "job_id": self.job_id,
                "state": self.state, "submitted_at": self.submitted_at,
                "log_folder": self.log_folder, "event": event, "time": now_iso(),
                **({"error": self.error} if self.error else {})}

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["run_dir"] = str(self.run_dir)
        return record


def append_event(exp: ExperimentPaths, record: JobRecord, event: str) -> None:
    append_jsonl(exp.manifest, record.manifest_line(event))


def latest_entries(manifest: Path) -> dict[str, dict[str, Any]]:
    """The last manifest line of each run_id, in order of first appearance."""
    latest: dict[str, dict[str, Any]] = {}
    for line in read_jsonl(manifest):
        run_id = line.get("run_id")
        if run_id:
            latest[run_id] = {**latest.get(run_id, {}), **line}
    return latest


def last_submission(manifest: Path) -> dict[str, dict[str, Any]]:
    """For each run_id, the last line that carries a job id (the job that may still be live)."""
    found: dict[str, dict[str, Any]] = {}
    for line in read_jsonl(manifest):
        if line.get("run_id") and line.get("job_id"):
            found[line["run_id"]] = line
    return found
