"""Records: run-directory paths, crash-safe JSON lines, atomic writes, typed records, env.json."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import torch

from harness.records import (
    EvalRecord,
    ExperimentPaths,
    RunPaths,
    TrainTick,
    append_eval,
    append_jsonl,
    append_tick,
    checkpoint_nimg,
    collect_env,
    read_evals,
    read_jsonl,
    read_metrics,
    write_atomic,
    write_env,
)


def test_run_paths_match_the_design_layout(tmp_path):
    paths = RunPaths(tmp_path / "exp" / "runs" / "abc123")
    rel = {name: getattr(paths, name).relative_to(paths.root).as_posix()
           for name in ("spec", "env", "metrics", "evals", "checkpoints", "latest", "samples")}
    assert rel == {"spec": "spec.yaml", "env": "env.json", "metrics": "metrics.jsonl",
                   "evals": "evals.jsonl", "checkpoints": "checkpoints",
                   "latest": "checkpoints/latest", "samples": "samples"}
    assert paths.run_id == "abc123"
    assert paths.checkpoint(51200).name == "snapshot-0000051200.pt"
    assert checkpoint_nimg(paths.checkpoint(51200)) == 51200
    experiment = ExperimentPaths(tmp_path / "exp")
    assert experiment.spec.name == "experiment.yaml"
    assert experiment.manifest.name == "manifest.jsonl"
    assert experiment.run("abc123") == paths
    assert (experiment.tune.name, experiment.report.name) == ("tune", "report")


def test_list_checkpoints_is_sorted_by_images_seen_and_ignores_other_files(tmp_path):
    paths = RunPaths(tmp_path)
    paths.checkpoints.mkdir()
    for nimg in (2048, 64, 1000000):
        paths.checkpoint(nimg).write_bytes(b"x")
    (paths.checkpoints / ".snapshot-0000000128.pt.tmp").write_bytes(b"partial")
    paths.latest.write_text("snapshot-0001000000.pt")
    assert [n for n, _ in paths.list_checkpoints()] == [64, 2048, 1000000]
    with pytest.raises(ValueError, match="snapshot-<nimg>.pt"):
        checkpoint_nimg("latest")


def test_append_then_read_round_trips_numpy_and_torch_scalars_and_nan(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"nimg": np.int64(5), "loss": torch.tensor(0.25), "v": np.arange(2)})
    append_jsonl(path, {"nimg": 10, "loss": float("nan")})
    records = read_jsonl(path)
    assert records[0] == {"nimg": 5, "loss": 0.25, "v": [0, 1]}
    assert records[1]["nimg"] == 10 and math.isnan(records[1]["loss"])
    assert path.read_bytes().count(b"\n") == 2


def test_trailing_partial_line_is_skipped_and_the_next_append_starts_a_fresh_line(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, {"nimg": 1})
    with open(path, "ab") as handle:
        handle.write(b'{"nimg": 2, "lo')  # what a kill in the middle of a write would leave
    assert read_jsonl(path) == [{"nimg": 1}]
    append_jsonl(path, {"nimg": 3})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_jsonl(path) == [{"nimg": 1}, {"nimg": 3}]
    assert any("m.jsonl:2" in str(w.message) for w in caught)


def test_a_complete_json_object_without_its_newline_is_not_yet_a_record(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"nimg": 1}\n{"nimg": 2}')
    assert read_jsonl(path) == [{"nimg": 1}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


_WRITER = """
import sys
from harness.records import append_jsonl
path = sys.argv[1]
i = 0
while True:
    append_jsonl(path, {"i": i, "pad": "x" * 500})
    i += 1
    if i == 50:
        print("ready", flush=True)
"""


def test_sigkill_during_appends_leaves_only_complete_consecutive_records(tmp_path):
    path = tmp_path / "m.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    records = read_jsonl(path)
    assert len(records) >= 50
    assert [r["i"] for r in records] == list(range(len(records)))
    assert all(r["pad"] == "x" * 500 for r in records)


def test_write_atomic_replaces_whole_file_and_keeps_old_content_when_rename_fails(tmp_path,
                                                                                  monkeypatch):
    path = tmp_path / "sub" / "spec.yaml"
    write_atomic(path, "a: 1\n")
    write_atomic(path, b"a: 2\n")
    assert path.read_text() == "a: 2\n"

    def broken_replace(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        write_atomic(path, "a: 3\n")
    assert path.read_text() == "a: 2\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["spec.yaml"]  # no temp file left


def test_train_ticks_flatten_extras_and_resume_duplicates_keep_the_last(tmp_path):
    paths = RunPaths(tmp_path)
    for nimg, loss in ((64, 1.0), (128, 0.9), (128, 0.8), (192, 0.7)):
        append_tick(paths, TrainTick(nimg=nimg, step=nimg // 64, loss=loss, lr=1e-3,
                                     img_per_s=10.0, wall_s=1.0, device_hours=1 / 3600,
                                     extra={"ema_beta": 0.9}))
    metrics = read_metrics(tmp_path)
    assert [m["nimg"] for m in metrics] == [64, 128, 192]
    assert metrics[1]["loss"] == 0.8
    assert metrics[0]["ema_beta"] == 0.9
    assert set(metrics[0]) == {"nimg", "step", "loss", "lr", "img_per_s", "wall_s",
                               "device_hours", "ema_beta"}
    with pytest.raises(ValueError, match="reuse"):
        TrainTick(1, 1, 1.0, 1.0, 1.0, 1.0, 1.0, extra={"loss": 2.0}).to_record()


def test_eval_records_keep_the_latest_per_evaluation_key(tmp_path):
    paths = RunPaths(tmp_path)
    common = dict(metric="fd-digits", sampler="heun", num_samples=100, reference="digits-train",
                  seed_start=0, seed_stop=100)
    append_eval(paths, EvalRecord(nimg=64, value=5.0, nfe=35, **common))
    append_eval(paths, EvalRecord(nimg=64, value=7.0, nfe=9, **common))
    append_eval(paths, EvalRecord(nimg=64, value=4.0, nfe=35, **common))
    evals = read_evals(tmp_path)
    assert [(e["nfe"], e["value"]) for e in evals] == [(9, 7.0), (35, 4.0)]
    with pytest.raises(ValueError, match="lacks"):
        append_eval(paths, {"nimg": 1, "metric": "fd"})


def test_env_json_records_git_packages_host_and_keeps_earlier_starts(tmp_path):
    paths = RunPaths(tmp_path)
    first = write_env(paths, collect_env(device="cpu", world_size=2))
    second = write_env(paths, collect_env(device="cpu"))
    on_disk = json.loads(paths.env.read_text())
    assert on_disk == json.loads(json.dumps(second))
    assert on_disk["previous_starts"][0]["start_time"] == first["start_time"]
    assert on_disk["previous_starts"][0]["world_size"] == 2
    assert on_disk["packages"]["torch"].startswith(torch.__version__.split("+")[0])
    assert on_disk["device"]["type"] == "cpu"
    assert set(on_disk["git"]) == {"commit", "dirty"}
    commit = on_disk["git"]["commit"]
    assert commit is None or len(commit) == 40  # a sha when the source is a git checkout
