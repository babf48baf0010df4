"""The run-directory layout and typed, crash-safe readers and writers of the records.

`RunPaths` / `ExperimentPaths` are the one place that knows file names (shared/DESIGN.md).
"""

from harness.records.io import (
    append_jsonl,
    atomic_writer,
    encode_record,
    iter_jsonl,
    read_json,
    read_jsonl,
    write_atomic,
    write_json_atomic,
)
from harness.records.paths import ExperimentPaths, RunPaths, checkpoint_nimg
from harness.records.records import (
    EvalRecord,
    TrainTick,
    append_eval,
    append_tick,
    collect_env,
    describe_device,
    git_state,
    package_versions,
    read_evals,
    read_metrics,
    write_env,
)

__all__ = [
    "EvalRecord", "ExperimentPaths", "RunPaths", "TrainTick", "append_eval", "append_jsonl",
    "append_tick", "atomic_writer", "checkpoint_nimg", "collect_env", "describe_device", "encode_record",
    "git_state", "iter_jsonl", "package_versions", "read_evals", "read_json", "read_jsonl",
    "read_metrics", "write_atomic", "write_env", "write_json_atomic",
]
