"""Trackers: one contract suite over every tracker, the W&B mirror's failure policy, the offline
W&B reader, and the progress display."""

from __future__ import annotations

import io
import logging

import pytest

from harness.records import RunPaths, read_json, read_metrics
from harness.tracking import JsonlTracker, MultiTracker, ProgressTracker, RecordingTracker, Tracker
from harness.tracking.wandb import (
    WandbTracker,
    iter_wandb_payloads,
    read_offline_run,
    resolve_mode,
    teardown,
)

WANDB_TEST_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true",
                  "WANDB_ERROR_REPORTING": "false", "WANDB_CONSOLE": "off"}

STEPS = [(64, {"loss": 1.5, "lr": 1e-4}), (128, {"loss": 1.25, "lr": 2e-4}),
         (192, {"loss": 1.0, "lr": 3e-4})]
CONFIG = {"training": {"batch_size": 64, "lr": 1e-3}, "diffusion": {"kind": "fdm-edm"}}


@pytest.fixture(scope="module")
def wandb_env(tmp_path_factory):
    """Offline W&B with no network, no git probing; the wandb service is stopped at the end."""
    directory = tmp_path_factory.mktemp("wandb")
    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**WANDB_TEST_ENV, "WANDB_DIR": str(directory)}.items():
            patch.setenv(key, value)
        yield directory
        teardown()


def _read_jsonl_tracker(tracker, tmp_path):
    rows = read_metrics(tracker.paths)
    return ([(r.pop("nimg"), r) for r in rows], read_json(tracker.paths.summary))


def _read_recording(tracker, tmp_path):
    return tracker.logged, tracker.summaries


def _read_wandb(tracker, tmp_path):
    run = read_offline_run(tmp_path / "wandb-dir")
    assert (run.run_id, run.group, run.job_type) == ("run0001", "exp", "fdm-edm")
    assert run.config == CONFIG
    logged = [(row["_step"], {k: v for k, v in row.items() if not k.startswith("_")})
              for row in run.history]
    summary = {k: v for k, v in run.summary.items() if k == "best_loss"}
    return logged, summary


TRACKERS = {
    "jsonl": (lambda tmp_path: JsonlTracker(RunPaths(tmp_path / "run")), _read_jsonl_tracker),
    "recording": (lambda tmp_path: RecordingTracker(), _read_recording),
    "wandb-offline": (lambda tmp_path: WandbTracker("harness-tests", directory=tmp_path
                                                    / "wandb-dir"), _read_wandb),
}


@pytest.mark.parametrize("name", sorted(TRACKERS))
def test_tracker_contract_what_is_logged_reads_back_step_by_step(name, tmp_path, wandb_env):
    make, read_back = TRACKERS[name]
    tracker = make(tmp_path)
    assert isinstance(tracker, Tracker)
    tracker.start("run0001", "exp", "fdm-edm", CONFIG)
    for step, metrics in STEPS:
        tracker.log(metrics, step=step)
    tracker.summary({"best_loss": 1.0})
    tracker.finish(0)
    logged, summary = read_back(tracker, tmp_path)
    assert logged == STEPS
    assert summary == {"best_loss": 1.0}


def test_wandb_offline_run_keeps_the_run_id_so_a_resume_targets_the_same_run(tmp_path, wandb_env):
    directory = tmp_path / "wb"
    for part in (STEPS[:2], STEPS[2:]):  # a run, killed, then resumed by the same job
        tracker = WandbTracker("harness-tests", directory=directory)
        tracker.start("resumed01", "exp", "edm", CONFIG)
        assert tracker.active
        for step, metrics in part:
            tracker.log(metrics, step=step)
        tracker.finish(0)
    files = sorted(directory.glob("wandb/offline-run-*/run-*.wandb"))
    runs = [read_offline_run(f) for f in files]
    assert [r.run_id for r in runs] == ["resumed01", "resumed01"]  # merged by `wandb sync`
    assert [row["_step"] for r in runs for row in r.history] == [64, 128, 192]


def test_wandb_init_failure_is_a_warning_and_every_later_call_is_a_no_op(caplog):
    calls = []

    def failing_init(**kwargs):
        calls.append(kwargs)
        raise RuntimeError("wandb-core could not start")

    tracker = WandbTracker("p", mode="offline", init=failing_init)
    with caplog.at_level(logging.WARNING, logger="harness.tracking"):
        tracker.start("r", "g", "edm", {})
        tracker.log({"loss": 1.0}, step=1)
        tracker.summary({"x": 1})
        tracker.finish(0)
    assert len(calls) == 1 and calls[0]["id"] == "r" and calls[0]["resume"] == "allow"
    assert not tracker.active
    assert tracker.failed == "init: RuntimeError: wandb-core could not start"
    assert sum("W&B init failed" in r.getMessage() for r in caplog.records) == 1


class _RunThatBreaks:
    def __init__(self):
        self.logged = []
        self.summary = {}

    def log(self, metrics, step):
        if len(self.logged) == 1:
            raise ConnectionError("socket closed")
        self.logged.append((step, metrics))

    def finish(self, exit_code):
        raise AssertionError("finish must not be called on a run that already failed")


def test_wandb_failure_mid_run_switches_the_mirror_off_without_raising(caplog):
    run = _RunThatBreaks()
    tracker = WandbTracker("p", mode="offline", init=lambda **kw: run)
    tracker.start("r", "g", "edm", {})
    with caplog.at_level(logging.WARNING, logger="harness.tracking"):
        for step, metrics in STEPS:
            tracker.log(metrics, step=step)
        tracker.finish(0)
    assert run.logged == [STEPS[0]]
    assert tracker.failed == "log: ConnectionError: socket closed"


def test_disabled_mode_never_calls_init():
    tracker = WandbTracker("p", mode="disabled", init=lambda **kw: pytest.fail("init called"))
    tracker.start("r", "g", "edm", {})
    tracker.log({"loss": 1.0}, step=1)
    assert not tracker.active and tracker.failed is None


@pytest.mark.parametrize("spec_mode, env, expected", [
    (None, {}, "offline"),
    (None, {"WANDB_MODE": "online"}, "online"),
    (None, {"WANDB_MODE": "dryrun"}, "offline"),
    ("online", {"WANDB_MODE": "offline"}, "online"),
    ("disabled", {}, "disabled"),
])
def test_mode_is_offline_unless_the_spec_or_wandb_mode_says_otherwise(spec_mode, env, expected):
    assert resolve_mode(spec_mode, env) == expected


def test_unknown_mode_names_the_valid_ones():
    with pytest.raises(ValueError, match="online.*offline.*disabled"):
        resolve_mode("cloud", {})


def test_reader_reassembles_records_split_across_blocks_and_drops_a_torn_tail(tmp_path,
                                                                                wandb_env):
    big = {"notes": "x" * 70_000}  # a config record longer than two 32 KiB blocks
    tracker = WandbTracker("harness-tests", directory=tmp_path)
    tracker.start("bigconfig", "g", "edm", big)
    tracker.log({"loss": 0.5}, step=10)
    tracker.finish(0)
    run = read_offline_run(tmp_path)
    assert run.config["notes"] == big["notes"]
    assert [row["loss"] for row in run.history] == [0.5]
    data = run.path.read_bytes()
    whole = list(iter_wandb_payloads(data))
    torn = list(iter_wandb_payloads(data[: len(data) - 3]))
    assert torn == whole[: len(torn)] and len(torn) == len(whole) - 1
    with pytest.raises(ValueError, match="magic"):
        list(iter_wandb_payloads(b"PK\x03\x04" + bytes(10)))


class _Broken:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise OSError(f"{name} broke")
        return fail


def test_multi_tracker_survives_a_failing_mirror_but_not_failing_records(tmp_path, caplog):
    recording = RecordingTracker()
    multi = MultiTracker([JsonlTracker(RunPaths(tmp_path)), _Broken(), recording], required=1)
    with caplog.at_level(logging.WARNING, logger="harness.tracking"):
        multi.start("r", "g", "edm", {})
        multi.log({"loss": 2.0}, step=64)
        multi.finish(0)
    assert recording.logged == [(64, {"loss": 2.0})]
    assert read_metrics(tmp_path) == [{"nimg": 64, "loss": 2.0}]
    assert any("_Broken.log failed" in r.getMessage() for r in caplog.records)
    with pytest.raises(OSError, match="log broke"):
        MultiTracker([_Broken(), recording], required=1).log({"loss": 1.0}, step=1)


def test_progress_prints_plain_lines_in_batch_jobs_and_a_bar_on_a_terminal():
    lines = io.StringIO()
    batch = ProgressTracker(1000, stream=lines)
    assert not batch.interactive  # StringIO is not a TTY
    batch.start("r1", "exp", "edm", {})
    batch.log({"loss": 0.5, "img_per_s": 100.0}, step=500)
    batch.finish(0)
    text = lines.getvalue()
    assert "\r" not in text
    assert "[r1] 0.5/1.0 kimg  loss 0.5  100.0 img/s  eta 0m05s\n" in text
    bar = io.StringIO()
    tty = ProgressTracker(1000, stream=bar, interactive=True)
    tty.start("r1", "exp", "edm", {})
    tty.log({"loss": 0.5, "img_per_s": 100.0}, step=250)
    assert bar.getvalue().startswith("\r[######..................]  25.0%")
