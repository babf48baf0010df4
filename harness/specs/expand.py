"""Expansion: an experiment → one resolved `JobSpec` per variant × grid point × seed.

Order (stable, the order of the file): variants as written; within a variant the grid points
as the product of the axes as written (last axis fastest); within a point the seeds as written.

A job is built in layers, each later one winning: the experiment's sections, the variant's
`network:` / `training:` blocks and parameters, the grid point. Then the unset network fields
take the architecture's defaults (`harness.nets.ARCH_DEFAULTS[arch]`; for the small net
`small_defaults(resolution)`, sized per image size), the dataset its native geometry, the metric its
'auto' choice, and the result is validated as a `JobSpec`. An error is reported at the field
the user wrote (`grid.training.lr`, `variants.vp.network.channel_mult`, `training.batch`).

A grid axis over a diffusion parameter that a variant's kind does not use (`damping` on a
baseline, see `DIFFUSION_APPLIES_TO`) is skipped for that variant: the baseline is trained once
per seed, not once per damping value.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from pydantic import ValidationError

from harness.errors import SpecError
from harness.specs.models import (
    DATASET_GEOMETRY,
    DIFFUSION_APPLIES_TO,
    DIFFUSION_NEUTRAL,
    DIFFUSION_REQUIRED_FOR_FDM,
    FD_DATASETS,
    NETWORK_NON_ARCH_FIELDS,
    ExperimentSpec,
    JobSpec,
    NetworkSpec,
    is_fdm_kind,
)
from harness.specs.validation import spec_error_message, to_spec_error


def expand(spec: ExperimentSpec) -> list[JobSpec]:
    """Every job of the experiment, in a stable order; raises SpecError on an invalid job."""
    jobs: list[JobSpec] = []
    points_by_run_id: dict[str, dict[str, Any]] = {}
    for variant_name, variant in spec.variants.items():
        for point in grid_points(spec.grid, variant.kind):
            for seed in spec.seeds:
                job = resolve_job(spec, variant_name, seed, point)
                if job.run_id in points_by_run_id:
                    raise _duplicate_error(points_by_run_id[job.run_id], point, variant_name)
                points_by_run_id[job.run_id] = point
                jobs.append(job)
    return jobs


def check_backbones(spec: ExperimentSpec, jobs: list[JobSpec]) -> None:
    """Build each distinct backbone on the meta device (free), so that a network harness.nets
    cannot build fails at load time, reported at the field that set it."""
    from harness.specs.table import parameter_count

    for job in jobs:
        try:
            parameter_count(job)
        except SpecError as exc:
            name = exc.field if exc.field in NetworkSpec.model_fields else ""
            error = SpecError(f"network.{name}" if name else "network", spec_error_message(exc))
            raise _Blame(job.variant, spec.variants[job.variant], job.overrides).rewrite(error) from None


def grid_points(grid: dict[str, tuple[Any, ...]], kind: str) -> list[dict[str, Any]]:
    """The grid points that apply to a variant of `kind` ([{}] when there is no axis)."""
    axes = {axis: values for axis, values in grid.items() if axis_applies(axis, kind)}
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def axis_applies(axis: str, kind: str) -> bool:
    section, name = axis.split(".", 1)
    return section != "diffusion" or kind in DIFFUSION_APPLIES_TO.get(name, (kind,))


def resolve_job(spec: ExperimentSpec, variant_name: str, seed: int, point: dict[str, Any]) -> JobSpec:
    """The JobSpec of one variant, seed and grid point, every field concrete."""
    variant = spec.variants[variant_name]
    blame = _Blame(variant_name, variant, point)
    grid = _split_point(point)
    training = {**spec.training.model_dump(), **(variant.training or {}), **grid["training"]}
    dataset = _resolve_dataset({**spec.dataset.model_dump(), **grid["dataset"]})
    network = _resolve_network({**_set_fields(spec.network), **(variant.network or {}), **grid["network"]},
                               training, dataset.get("resolution"), blame)
    if dataset.get("use_labels") is None:
        dataset["use_labels"] = bool(network.get("conditional"))
    raw = {
        "experiment": spec.name,
        "variant": variant_name,
        "seed": seed,
        "dataset": dataset,
        "network": network,
        "diffusion": _resolve_diffusion(variant, grid["diffusion"], variant_name),
        "training": training,
        "evaluation": _resolve_evaluation({**spec.evaluation.model_dump(), **grid["evaluation"]}, dataset),
        "launch": spec.launch.model_dump(),
        "tracking": spec.tracking.model_dump(),
    }
    try:
        job = JobSpec.model_validate(raw)
    except ValidationError as exc:
        raise blame.rewrite(to_spec_error(exc, JobSpec)) from None
    except SpecError as exc:
        raise blame.rewrite(exc) from None
    resolved = job.model_dump(mode="json")
    overrides = {axis: resolved[axis.split(".", 1)[0]][axis.split(".", 1)[1]] for axis in point}
    return job.model_copy(update={"overrides": overrides})


def _split_point(point: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {s: {} for s in ("dataset", "network", "diffusion", "training", "evaluation")}
    for axis, value in point.items():
        section, name = axis.split(".", 1)
        sections[section][name] = value
    return sections


def _set_fields(network: NetworkSpec) -> dict[str, Any]:
    """The network fields the experiment sets (None means unset: the architecture's default)."""
    return {k: v for k, v in network.model_dump().items() if v is not None}


def arch_defaults(arch: str, img_resolution: int | None) -> dict[str, Any]:
    """The backbone defaults of `arch` at this image size (the small net is sized per resolution)."""
    from harness.nets import ARCH_DEFAULTS, small_defaults

    if arch == "small" and isinstance(img_resolution, int):
        return small_defaults(img_resolution)
    return ARCH_DEFAULTS[arch]


def _resolve_network(merged: dict[str, Any], training: dict[str, Any], img_resolution: int | None,
                     blame: _Blame) -> dict[str, Any]:
    from harness.nets import ARCH_DEFAULTS

    merged = {k: v for k, v in merged.items() if v is not None}
    arch = merged.get("arch")
    if arch not in ARCH_DEFAULTS:
        try:  # let the model say what is wrong with the architecture name
            NetworkSpec.model_validate(merged)
        except ValidationError as exc:
            raise blame.rewrite(to_spec_error(exc, NetworkSpec, prefix="network")) from None
        raise blame.rewrite(SpecError("network.arch", f"{arch!r} has no defaults in harness.nets.ARCH_DEFAULTS"))
    defaults = arch_defaults(arch, img_resolution)
    resolved: dict[str, Any] = {"arch": arch}
    for name in NetworkSpec.model_fields:
        if name in NETWORK_NON_ARCH_FIELDS:
            continue
        if name in defaults:
            resolved[name] = merged.get(name, defaults[name])
        elif name in merged:
            raise blame.rewrite(SpecError(f"network.{name}", f"{merged[name]!r}: arch '{arch}' has no "
                                                             f"'{name}' (its fields: {', '.join(defaults)})"))
        else:
            resolved[name] = None
    augment_p = training.get("augment_p") or 0
    resolved["augment_dim"] = merged.get("augment_dim", 9 if _positive(augment_p) else 0)
    resolved["conditional"] = merged.get("conditional", False)
    return resolved


def _positive(value: Any) -> bool:
    try:
        return float(value) > 0
    except (TypeError, ValueError):
        return False  # validation of training.augment_p reports it


def _resolve_dataset(dataset: dict[str, Any]) -> dict[str, Any]:
    name = dataset.get("name")
    resolution, channels, classes = DATASET_GEOMETRY.get(name, (None, 3, 0))
    resolved = dict(dataset)
    resolved["resolution"] = dataset.get("resolution") or resolution
    resolved["channels"] = dataset.get("channels") or channels
    resolved["num_classes"] = classes if dataset.get("num_classes") is None else dataset["num_classes"]
    return resolved


def _resolve_diffusion(variant, grid: dict[str, Any], variant_name: str) -> dict[str, Any]:
    params = {**variant.diffusion_params(), **grid}
    if is_fdm_kind(variant.kind):
        for name in DIFFUSION_REQUIRED_FOR_FDM:
            if name not in params:
                raise SpecError(f"variants.{variant_name}.{name}", _REQUIRED_HELP[name].format(kind=variant.kind))
    return {"kind": variant.kind, **{name: params.get(name, DIFFUSION_NEUTRAL[name]) for name in DIFFUSION_NEUTRAL}}


_REQUIRED_HELP = {
    "multiplier": "required for FDM kind '{kind}' (k; no default, since the official CLI uses 2.0 and its "
                  "classes 1.0): official k = 2 on CIFAR-10 and AFHQv2, 1 on FFHQ; VE-FDM runs with k = 1",
    "warmup_kimg": "required for FDM kind '{kind}' (loss-weight cap warm-up in kimg = official warmup_ite x "
                   "batch, e.g. 102.4 for CIFAR-10 EDM-FDM; 0 turns the warm-up off)",
}


def _resolve_evaluation(evaluation: dict[str, Any], dataset: dict[str, Any]) -> dict[str, Any]:
    if evaluation.get("metric") == "auto":
        name = dataset.get("name")
        evaluation = {**evaluation, "metric": f"fd-{name}" if name in FD_DATASETS else "fid"}
    return evaluation


class _Blame:
    """Maps a job field (`training.lr`) to the experiment field that set it for this job."""

    def __init__(self, variant_name: str, variant, point: dict[str, Any]):
        self.variant_name = variant_name
        self.variant = variant
        self.point = point

    def field(self, job_field: str) -> str:
        match = re.match(r"^([a-z_]+)\.([a-z_0-9]+)(.*)$", job_field)
        if not match:
            return job_field
        section, name, rest = match.groups()
        if f"{section}.{name}" in self.point:
            return f"grid.{section}.{name}{rest}"
        prefix = f"variants.{self.variant_name}"
        if section == "diffusion":
            return f"{prefix}.{name}{rest}"
        if section in ("network", "training") and name in (getattr(self.variant, section) or {}):
            return f"{prefix}.{section}.{name}{rest}"
        return job_field

    def rewrite(self, exc: SpecError) -> SpecError:
        field = self.field(exc.field)
        message = spec_error_message(exc)
        if field.startswith("grid."):
            message += f" (grid point of variant '{self.variant_name}')"
        return SpecError(field, message)


def _duplicate_error(first: dict[str, Any], second: dict[str, Any], variant_name: str) -> SpecError:
    """Two grid points resolved to one job: name the axis whose values differ only in spelling."""
    axis = next((a for a in second if repr(first.get(a)) != repr(second[a])), None)
    if axis is None:
        return SpecError("grid", f"variant '{variant_name}' expands to the same job twice")
    return SpecError(f"grid.{axis}", f"values {first[axis]!r} and {second[axis]!r} give the same job for "
                                     f"variant '{variant_name}'; remove one")
