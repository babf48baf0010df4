"""Cluster profiles: per-cluster launch defaults kept out of experiment specs.

A profile (`slurm/profiles/<name>.yaml`) says what every job on one cluster needs: partition,
account, GPUs, time limit, the setup lines that prepare a node (module loads, venv activation).
An experiment names it in `launch.profile`; fields the experiment sets itself win.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import SpecError, did_you_mean

# Where named profiles are looked up, in order: $HARNESS_PROFILES (a directory), then the
# repository's slurm/profiles/ (present in a clone or an editable install).
_REPO_PROFILES = Path(__file__).resolve().parents[2] / "slurm" / "profiles"


class ClusterProfile(BaseModel):
    """Defaults for every job launched on one cluster; a field left out (None) is not set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    nodes: int | None = Field(None, ge=1)
    tasks_per_node: int | None = Field(None, ge=1)
    gpus_per_node: int | None = Field(None, ge=0)
    cpus_per_task: int | None = Field(None, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    timeout_min: int | None = Field(None, ge=1)
    signal_delay_s: int | None = Field(None, ge=1)
    max_num_timeout: int | None = Field(None, ge=0)
    max_concurrent: int | None = Field(None, ge=1)
    setup: tuple[str, ...] | None = None
    additional_parameters: dict[str, Any] | None = None


def profile_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("HARNESS_PROFILES", "").split(os.pathsep) if p]
    return [*dirs, _REPO_PROFILES]


def available_profiles() -> list[str]:
    names = {p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def find_profile(name: str, *, field_name: str = "launch.profile") -> Path:
    """The file of profile `name` (a bare name, or a path to a .yaml file)."""
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise SpecError(field_name, f"profile file {path} does not exist")
        return path
    for directory in profile_dirs():
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    known = available_profiles()
    raise SpecError(field_name, f"unknown profile '{name}'{did_you_mean(name, known)} "
                                f"(known: {', '.join(known) or 'none'}; searched "
                                f"{', '.join(str(d) for d in profile_dirs())})")


def load_profile(name: str, *, field_name: str = "launch.profile") -> ClusterProfile:
    path = find_profile(name, field_name=field_name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise SpecError(field_name, f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise SpecError(field_name, f"{path}: a profile is a mapping of fields")
    try:
        return ClusterProfile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"])
        hint = ""
        if error["type"] == "extra_forbidden":
            hint = did_you_mean(str(error["loc"][0]), ClusterProfile.model_fields)
        raise SpecError(field_name, f"{path}: {where}: {error['msg']}{hint}") from None
