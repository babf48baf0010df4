"""Loading an experiment: YAML → `--set` overrides → validation → data check → trial expansion.

Loading reads the spec file (and, for the data check, looks at the dataset's path); it creates
no directory and writes nothing, so a bad spec leaves no trace.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from harness.errors import HarnessError, SpecError
from harness.specs.expand import check_backbones, expand
from harness.specs.models import DatasetSpec, ExperimentSpec
from harness.specs.overrides import apply_overrides, parse_overrides
from harness.specs.validation import validate_model
from harness.specs.yamlio import read_yaml

DataCheck = Literal["explicit", "all", "none"]


def load_experiment(path: str | Path, overrides: Sequence[str] = (), *,
                    check_data: DataCheck = "explicit") -> ExperimentSpec:
    """Read, override, validate and expand-check an experiment spec; raise `SpecError` if it is bad.

    overrides: `a.b=VALUE` strings (VALUE parsed as YAML). check_data: "explicit" checks a
    `dataset.path` that the spec gives (a dry run of a paper preset works without the data);
    "all" also requires a dataset without a path to be found where harness.data looks (use it
    before launching); "none" checks nothing.
    """
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError("", f"{path}: an experiment spec is a mapping of fields (name, dataset, "
                            f"network, training, variants, seeds, ...), got {type(raw).__name__}")
    raw = apply_overrides(raw, parse_overrides(overrides), ExperimentSpec)
    spec = validate_model(ExperimentSpec, raw)
    check_dataset(spec.dataset, check_data)
    # Every job must resolve (grid values, variant blocks, cross-field rules) and its backbone build.
    check_backbones(spec, expand(spec))
    return spec


def check_dataset(dataset: DatasetSpec, mode: DataCheck = "explicit") -> None:
    """Raise SpecError('dataset.path', ...) when the dataset's file cannot be found."""
    if mode == "none" or (mode == "explicit" and dataset.path is None) or dataset.name == "digits":
        return
    from harness.data import resolve_data_path

    try:
        resolve_data_path(dataset.name, dataset.path)
    except HarnessError as exc:
        raise SpecError("dataset.path", str(exc)) from None
