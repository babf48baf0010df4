"""Launching: experiment spec → jobs on an executor (local subprocesses, SLURM, in-process),
with a manifest, relaunch without duplicates, status and cancel.

```python
records = launch_experiment(spec, executor_kind="local")     # waits, prints progress + results
experiment_status("runs/quickstart")                          # one JobRecord per run
cancel_experiment("runs/quickstart")
```
See docs/launch.md.
"""

from harness.launch.executors import (
    EXECUTOR_KINDS,
    InProcessExecutor,
    Resources,
    check_executor_kind,
    make_executor,
    resolve_resources,
    slurm_available,
)
from harness.launch.job import TrainJob
from harness.launch.launcher import launch_experiment
from harness.launch.manifest import JobRecord, latest_entries
from harness.launch.profiles import ClusterProfile, load_profile
from harness.launch.status import cancel_experiment, experiment_status

__all__ = [
    "EXECUTOR_KINDS", "ClusterProfile", "InProcessExecutor", "JobRecord", "Resources", "TrainJob",
    "cancel_experiment", "check_executor_kind", "experiment_status", "latest_entries",
    "launch_experiment", "load_profile", "make_executor", "resolve_resources", "slurm_available",
]
