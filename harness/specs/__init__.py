"""Declarative specs: the experiment a researcher writes, the jobs it expands into.

```python
spec = load_experiment("experiments/quickstart.yaml", ["training.lr=2e-3"])   # SpecError if bad
jobs = expand(spec)                      # variants × grid points × seeds, each a resolved JobSpec
print(dry_run_table(spec, jobs))         # run_id, variant, kind, seed, overrides, params, images, device-h
job.run_id; job.to_yaml(); JobSpec.from_yaml(text_or_path)
```
See docs/specs.md for every field.
"""

from harness.specs.expand import axis_applies, expand, grid_points, resolve_job
from harness.specs.load import check_dataset, load_experiment
from harness.specs.models import (
    DATASET_GEOMETRY,
    DIFFUSION_APPLIES_TO,
    DIFFUSION_NEUTRAL,
    FDM_KINDS,
    DatasetSpec,
    DiffusionSpec,
    EvaluationSpec,
    ExperimentSpec,
    JobSpec,
    LaunchSpec,
    NetworkSpec,
    SamplerSpec,
    TrackingSpec,
    TrainingSpec,
    VariantSpec,
    WandbSpec,
    grid_fields,
)
from harness.specs.overrides import apply_overrides, parse_overrides
from harness.specs.table import backbone_kwargs, benchmark_key, dry_run_rows, dry_run_table, parameter_count
from harness.specs.validation import validate_model
from harness.specs.yamlio import dump_yaml, parse_yaml, read_yaml

__all__ = [
    "DATASET_GEOMETRY",
    "DIFFUSION_APPLIES_TO",
    "DIFFUSION_NEUTRAL",
    "FDM_KINDS",
    "DatasetSpec",
    "DiffusionSpec",
    "EvaluationSpec",
    "ExperimentSpec",
    "JobSpec",
    "LaunchSpec",
    "NetworkSpec",
    "SamplerSpec",
    "TrackingSpec",
    "TrainingSpec",
    "VariantSpec",
    "WandbSpec",
    "apply_overrides",
    "axis_applies",
    "backbone_kwargs",
    "benchmark_key",
    "check_dataset",
    "dry_run_rows",
    "dry_run_table",
    "dump_yaml",
    "expand",
    "grid_fields",
    "grid_points",
    "load_experiment",
    "parameter_count",
    "parse_overrides",
    "parse_yaml",
    "read_yaml",
    "resolve_job",
    "validate_model",
]
