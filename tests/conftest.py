"""Shared fixtures. Keep this small: a fixture lives here only when several test files use it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _slurm_skip_reason() -> str | None:
    """Why SLURM tests cannot run here, or None when a controller answers."""
    if shutil.which("sbatch") is None:
        return ("SLURM is not installed here (no sbatch on PATH); the test command "
                "`bash slurm/with-cluster.sh ...` installs and starts it where it runs as root")
    try:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed ({exc}); start the cluster: bash slurm/local-cluster.sh start"
    if state.returncode != 0 or not state.stdout.split():
        return ("sbatch is installed but no SLURM controller answers; start it with "
                "`bash slurm/local-cluster.sh start` (or run the tests through slurm/with-cluster.sh)")
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """Skip unless a SLURM cluster answers; returns the SLURM_CONF in use (may be '')."""
    reason = _slurm_skip_reason()
    if reason:
        pytest.skip(reason)
    return os.environ.get("SLURM_CONF", "")


@pytest.fixture
def one_thread():
    """One torch thread for the test. On a shared 2-core machine two threads per process make
    small kernels many times slower (they spin waiting for each other)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
