"""The Tracker protocol and the trackers that need no third-party service.

A tracker receives the life of one run: `start` once, `log` at every tick with `step` = images
seen, `summary` for final values, `finish` once. Trackers are passed in (never looked up by
name); the training job always adds the JSONL tracker, which writes the records that analysis
reads, and any other tracker (W&B, a progress display, a test's recorder) mirrors it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from harness.records import RunPaths, append_tick, read_json, write_json_atomic

log = logging.getLogger("harness.tracking")


@runtime_checkable
class Tracker(Protocol):
    def start(self, run_id: str, group: str, job_type: str, config: Mapping[str, Any]) -> None:
        """Begin (or resume) the run `run_id`; `group` = experiment, `job_type` = variant."""

    def log(self, metrics: Mapping[str, Any], *, step: int) -> None:
        """Record scalar metrics at `step` images seen."""

    def summary(self, values: Mapping[str, Any]) -> None:
        """Record final values of the run (merged with earlier summaries)."""

    def finish(self, exit_code: int = 0) -> None:
        """End the run; `exit_code` != 0 marks a failed or preempted run."""


class JsonlTracker:
    """Writes every `log` call as one line of metrics.jsonl (`nimg` = step); always on.

    `summary` merges into summary.json (atomically rewritten).
    """

    def __init__(self, paths: RunPaths):
        self.paths = paths

    def start(self, run_id: str, group: str, job_type: str, config: Mapping[str, Any]) -> None:
        self.paths.root.mkdir(parents=True, exist_ok=True)

    def log(self, metrics: Mapping[str, Any], *, step: int) -> None:
        append_tick(self.paths, {"nimg": int(step), **{k: v for k, v in metrics.items()
                                                        if k != "nimg"}})

    def summary(self, values: Mapping[str, Any]) -> None:
        current = read_json(self.paths.summary) if self.paths.summary.exists() else {}
        write_json_atomic(self.paths.summary, {**current, **dict(values)})

    def finish(self, exit_code: int = 0) -> None:
        pass


@dataclass
class RecordingTracker:
    """Keeps everything it is given in memory: the tracker tests pass in and then inspect."""

    started: list[dict] = field(default_factory=list)
    logged: list[tuple[int, dict]] = field(default_factory=list)
    summaries: dict = field(default_factory=dict)
    finished: list[int] = field(default_factory=list)

    def start(self, run_id: str, group: str, job_type: str, config: Mapping[str, Any]) -> None:
        self.started.append({"run_id": run_id, "group": group, "job_type": job_type,
                             "config": dict(config)})

    def log(self, metrics: Mapping[str, Any], *, step: int) -> None:
        self.logged.append((int(step), dict(metrics)))

    def summary(self, values: Mapping[str, Any]) -> None:
        self.summaries.update(values)

    def finish(self, exit_code: int = 0) -> None:
        self.finished.append(int(exit_code))

    def series(self, key: str) -> list[tuple[int, Any]]:
        """(step, value) of one metric in logging order."""
        return [(step, m[key]) for step, m in self.logged if key in m]


class MultiTracker:
    """Forwards every call to each tracker in order.

    The first `required` trackers are the records: their failures propagate. A failing mirror
    (any later tracker) must not take the others down: its exception is logged as a warning and
    the call goes on to the rest.
    """

    def __init__(self, trackers: Sequence[Tracker], *, required: int = 0):
        self.trackers = list(trackers)
        self.required = required

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        for index, tracker in enumerate(self.trackers):
            try:
                getattr(tracker, method)(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a mirror's failure is reported, not fatal
                if index < self.required:
                    raise
                log.warning("tracker %s.%s failed (%s: %s); training continues",
                            type(tracker).__name__, method, type(exc).__name__, exc)

    def start(self, run_id: str, group: str, job_type: str, config: Mapping[str, Any]) -> None:
        self._each("start", run_id, group, job_type, config)

    def log(self, metrics: Mapping[str, Any], *, step: int) -> None:
        self._each("log", metrics, step=step)

    def summary(self, values: Mapping[str, Any]) -> None:
        self._each("summary", values)

    def finish(self, exit_code: int = 0) -> None:
        self._each("finish", exit_code)
