"""The spec models: what a researcher writes (`ExperimentSpec`) and what one training job runs
(`JobSpec`, fully resolved, hashed into its `run_id`).

Every model is frozen and rejects unknown fields. Units are in the field names. A field left
`None` in an experiment means "not set": the network fields then take the architecture's
defaults (`harness.nets.ARCH_DEFAULTS`), the launch fields the cluster profile's or the
executor's. In a `JobSpec` every field that the result depends on is concrete.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.diffusion import KINDS, base_kind
from harness.errors import SpecError, did_you_mean
from harness.specs.validation import qualified_hint, validate_model
from harness.specs.yamlio import dump_yaml, parse_yaml

# Strict scalars: YAML already gives numbers and booleans their types, so `batch: true` or
# `batch: 32.5` is a mistake to report, not a value to coerce (pydantic's lax mode takes both).
Int = Annotated[int, Field(strict=True)]
Float = Annotated[float, Field(strict=True)]  # an int is still accepted (1 → 1.0)
Bool = Annotated[bool, Field(strict=True)]
PositiveInt = Annotated[int, Field(gt=0, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]
PositiveFloat = Annotated[float, Field(gt=0, strict=True)]
NonNegativeFloat = Annotated[float, Field(ge=0, strict=True)]
Probability = Annotated[float, Field(ge=0, le=1, strict=True)]

Kind = Literal[KINDS]  # type: ignore[valid-type]  # one Literal of harness.diffusion.KINDS
DatasetName = Literal["digits", "mnist", "fashion-mnist", "cifar10", "ffhq-64", "afhqv2-64", "zip", "folder"]
Arch = Literal["ddpmpp", "ncsnpp", "small"]
SamplerName = Literal["euler", "heun", "dpmpp_2m", "dpmpp_3s"]
Metric = Literal["auto", "fid", "fd-digits", "fd-mnist", "fd-fashion-mnist"]

_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")

# Native geometry of the named datasets: (resolution, channels, classes).
DATASET_GEOMETRY: dict[str, tuple[int, int, int]] = {
    "digits": (8, 1, 10),
    "mnist": (28, 1, 10),
    "fashion-mnist": (28, 1, 10),
    "cifar10": (32, 3, 10),
    "ffhq-64": (64, 3, 0),  # EDM's ffhq-64x64.zip / afhqv2-64x64.zip, used unconditionally
    "afhqv2-64": (64, 3, 0),
}
# Datasets with a small feature classifier of the project: their metric is Fréchet distance
# in those features (fd-<name>), never called FID.
FD_DATASETS = ("digits", "mnist", "fashion-mnist")

# Which diffusion parameters mean something for which kinds. The rest take neutral values,
# so that a parameter that cannot change a run cannot change its run_id either.
FDM_KINDS = tuple(k for k in KINDS if base_kind(k) != k)
DIFFUSION_APPLIES_TO: dict[str, tuple[str, ...]] = {
    "damping": FDM_KINDS,
    "multiplier": FDM_KINDS,
    "warmup_kimg": FDM_KINDS,
    "cap_after_warmup": FDM_KINDS,
    # FDM's B(t) = k (β_min t + ½ β_d t²). VP's own σ(t) keeps EDM's fixed 0.1 / 19.9
    # (harness.diffusion.scalings uses these parameters for FDM's input scale only).
    "beta_min": FDM_KINDS,
    "beta_d": FDM_KINDS,
    "sigma_data": ("edm", "fdm-edm"),  # EDM's c_skip, c_out, c_in and loss weight
}
DIFFUSION_NEUTRAL: dict[str, Any] = {
    "damping": 1.0,
    "multiplier": 1.0,
    "warmup_kimg": 0.0,
    "cap_after_warmup": "none",
    "beta_min": 0.1,
    "beta_d": 19.9,
    "sigma_data": 0.5,
}
# No default for an FDM kind: the official CLI and classes disagree on k (2.0 against 1.0,
# FDM.md §6.2 pitfall 4) and the warm-up length differs per dataset and variant (§1.3).
DIFFUSION_REQUIRED_FOR_FDM = ("multiplier", "warmup_kimg")


@dataclass(frozen=True)
class PatchOf:
    """Field marker: a partial block of `model` (its keys are `model`'s fields, all optional)."""

    model: type[BaseModel]


@dataclass(frozen=True)
class DottedKeys:
    """Field marker: a mapping whose keys are dotted paths (grid axes), not nested fields."""


def is_fdm_kind(kind: str) -> bool:
    return kind in FDM_KINDS


class Spec(BaseModel):
    """Base of every spec model: frozen, unknown fields rejected, YAML in and out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_yaml(self) -> str:
        return dump_yaml(self.model_dump(mode="json"))

    @classmethod
    def from_yaml(cls, source: str | PathLike[str]):
        """Validate YAML text, or the file at a path-like `source`, into this model."""
        if isinstance(source, PathLike):
            text, origin = Path(source).read_text(encoding="utf-8"), str(source)
        else:
            text, origin = source, "<string>"
        return validate_model(cls, parse_yaml(text, origin))


# ----------------------------------------------------------------------------------- sections


class DatasetSpec(Spec):
    """The training images. `path` is read relative to the working directory of `harness run`.

    Without `path` a named dataset is looked for where `harness.data.resolve_data_path` looks
    (`$HARNESS_DATA_DIR`, ./data, ...). resolution / channels / num_classes default to the named
    dataset's own (a resolution other than the native one pads or resizes); `zip` and `folder`
    datasets must give `path` and `resolution` (specs do not open data files), channels default
    to 3 and num_classes to 0.
    `use_labels` defaults to `network.conditional`.
    """

    name: DatasetName
    path: str | None = None
    resolution: PositiveInt | None = None
    channels: PositiveInt | None = None
    num_classes: NonNegativeInt | None = None
    use_labels: Bool | None = None
    max_images: PositiveInt | None = None

    @model_validator(mode="after")
    def _check_geometry(self) -> DatasetSpec:
        if self.name == "digits" and self.path is not None:
            raise SpecError("path", f"{self.path!r}: dataset 'digits' is embedded in scikit-learn and "
                                    "takes no path (remove dataset.path)")
        if self.name in DATASET_GEOMETRY:
            _, channels, classes = DATASET_GEOMETRY[self.name]
            if self.channels is not None and self.channels != channels:
                raise SpecError("channels", f"{self.channels} does not match dataset '{self.name}', "
                                            f"which has {channels} channel(s); leave it unset")
            if self.num_classes is not None and self.num_classes != classes:
                raise SpecError("num_classes", f"{self.num_classes} does not match dataset "
                                               f"'{self.name}', which has {classes} classes; leave it unset")
        else:
            if self.path is None:
                raise SpecError("path", f"required for dataset '{self.name}' (the {self.name} to read)")
            if self.resolution is None:
                raise SpecError("resolution", f"required for dataset '{self.name}' (image size in pixels)")
        return self


class NetworkSpec(Spec):
    """The backbone. Unset (None) fields take the architecture's defaults in the job
    (`harness.nets.ARCH_DEFAULTS[arch]`; the small net's `small_defaults(resolution)`).

    The field names are `harness.nets.build_backbone`'s keyword arguments. `augment_dim`
    defaults to 9 when `training.augment_p > 0` (EDM's augmentation labels), else 0;
    `conditional` gives the backbone `label_dim = dataset.num_classes`.
    """

    arch: Arch
    model_channels: PositiveInt | None = None
    channel_mult: tuple[PositiveInt, ...] | None = Field(None, min_length=1)
    channel_mult_emb: PositiveInt | None = None
    num_blocks: PositiveInt | None = None
    attn_resolutions: tuple[PositiveInt, ...] | None = None
    dropout: Probability | None = None
    label_dropout: Probability | None = None
    channel_mult_noise: PositiveInt | None = None
    embedding_type: Literal["positional", "fourier"] | None = None
    encoder_type: Literal["standard", "skip", "residual"] | None = None
    decoder_type: Literal["standard", "skip"] | None = None
    resample_filter: tuple[PositiveInt, ...] | None = Field(None, min_length=1)
    augment_dim: Int | None = None
    conditional: Bool = False

    @field_validator("augment_dim")
    @classmethod
    def _augment_dim(cls, augment_dim: int | None) -> int | None:
        if augment_dim not in (None, 0, 9):
            raise ValueError(f"{augment_dim} must be 0 or 9 (EDM's 9 augmentation labels)")
        return augment_dim


# Fields that are not backbone keyword arguments of the architecture.
NETWORK_NON_ARCH_FIELDS = ("arch", "augment_dim", "conditional")


class DiffusionSpec(Spec):
    """The resolved diffusion process of one job (a variant's kind and parameters).

    damping ζ and multiplier k set FDM's input scale γ_ζ(k (β_min t + ½ β_d t²)) (FDM.md §1.2,
    §2); warmup_kimg is the length of the loss-weight cap 5 → 500 (§1.3, official
    warmup_ite × official batch); cap_after_warmup 'none' is the official behaviour (no cap once
    the warm-up ends), 'hold' keeps the final cap 500 (ablation). Parameters that a kind does
    not use hold neutral values (`DIFFUSION_NEUTRAL`).
    """

    kind: Kind
    damping: PositiveFloat = 1.0
    multiplier: PositiveFloat = 1.0
    beta_min: PositiveFloat = 0.1
    beta_d: PositiveFloat = 19.9
    sigma_data: PositiveFloat = 0.5
    warmup_kimg: NonNegativeFloat = 0.0
    cap_after_warmup: Literal["none", "hold"] = "none"

    @model_validator(mode="after")
    def _check_neutral(self) -> DiffusionSpec:
        for name, kinds in DIFFUSION_APPLIES_TO.items():
            value = getattr(self, name)
            if self.kind not in kinds and value != DIFFUSION_NEUTRAL[name]:
                raise SpecError(name, f"{value!r} has no effect on kind '{self.kind}' (it applies to "
                                      f"{', '.join(kinds)}); a resolved job keeps {DIFFUSION_NEUTRAL[name]!r}")
        return self


class TrainingSpec(Spec):
    """Optimisation and bookkeeping. Every schedule is a function of images seen.

    batch is the global batch; batch_per_process (optional) splits it into gradient-accumulation
    rounds. precision: fp32 (TF32 off, the paper's setting), tf32, bf16 or fp16 autocast.
    tick_kimg: log interval; checkpoint_kimg: resumable state; snapshot_kimg: an evaluable
    snapshot that is kept. ema_rampup_ratio None turns the EMA ramp-up off.
    """

    duration_mimg: PositiveFloat
    batch: PositiveInt
    batch_per_process: PositiveInt | None = None
    lr: PositiveFloat
    lr_rampup_mimg: NonNegativeFloat = 10.0
    adam_betas: tuple[Probability, Probability] = (0.9, 0.999)
    adam_eps: PositiveFloat = 1e-8
    ema_halflife_mimg: NonNegativeFloat = 0.5
    ema_rampup_ratio: PositiveFloat | None = 0.05
    augment_p: Probability = 0.0
    precision: Literal["fp32", "tf32", "bf16", "fp16"] = "fp32"
    channels_last: Bool = False
    compile: Bool = False
    fused_optimizer: Bool = False
    tick_kimg: PositiveFloat = 50.0
    checkpoint_kimg: PositiveFloat = 1000.0
    snapshot_kimg: PositiveFloat = 10000.0
    keep_checkpoints: PositiveInt = 2
    device: Literal["auto", "cpu", "cuda"] = "auto"
    grad_nan_to_num: Bool = True
    num_threads: PositiveInt | None = None

    @model_validator(mode="after")
    def _check(self) -> TrainingSpec:
        if self.batch_per_process is not None and self.batch % self.batch_per_process:
            raise SpecError("batch_per_process", f"{self.batch_per_process} does not divide "
                                                 f"training.batch {self.batch}")
        return self


class VariantSpec(Spec):
    """One named variant: a kind, its parameters, and per-variant changes to the job.

    `network:` / `training:` are partial blocks merged over the experiment's (the paper's VP and
    VE pairs need their own architectures). Parameters left unset take `DIFFUSION_NEUTRAL`,
    except multiplier and warmup_kimg, which an FDM kind must state. Setting a parameter that
    the kind does not use is an error (it would change nothing).
    """

    kind: Kind
    description: str = ""
    damping: PositiveFloat | None = None
    multiplier: PositiveFloat | None = None
    beta_min: PositiveFloat | None = None
    beta_d: PositiveFloat | None = None
    sigma_data: PositiveFloat | None = None
    warmup_kimg: NonNegativeFloat | None = None
    cap_after_warmup: Literal["none", "hold"] | None = None
    network: Annotated[dict[str, Any] | None, PatchOf(NetworkSpec)] = None
    training: Annotated[dict[str, Any] | None, PatchOf(TrainingSpec)] = None

    @model_validator(mode="after")
    def _check(self) -> VariantSpec:
        for name, kinds in DIFFUSION_APPLIES_TO.items():
            if getattr(self, name) is not None and self.kind not in kinds:
                raise SpecError(name, f"{getattr(self, name)!r} has no effect on kind '{self.kind}'; "
                                      f"{name} applies to {', '.join(kinds)} only (remove it)")
        _check_patch_keys("network", self.network, NetworkSpec)
        _check_patch_keys("training", self.training, TrainingSpec)
        return self

    def diffusion_params(self) -> dict[str, Any]:
        """The parameters this variant sets explicitly."""
        return {name: getattr(self, name) for name in DIFFUSION_APPLIES_TO if getattr(self, name) is not None}


def _check_patch_keys(section: str, patch: dict[str, Any] | None, model: type[BaseModel]) -> None:
    for key in patch or {}:
        if key not in model.model_fields:
            raise SpecError(f"{section}.{key}", f"unknown field '{section}.{key}'"
                                                f"{qualified_hint(key, model.model_fields, section + '.')}")


class SamplerSpec(Spec):
    """One sampler and the NFE (network evaluations per image) to evaluate it at."""

    name: SamplerName
    nfe: tuple[PositiveInt, ...] = Field(min_length=1)

    @field_validator("nfe")
    @classmethod
    def _unique(cls, nfe: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(nfe)) != len(nfe):
            raise ValueError(f"{list(nfe)} lists an NFE twice")
        return nfe

    @model_validator(mode="after")
    def _reachable(self) -> SamplerSpec:
        from harness.diffusion import samplers

        for nfe in self.nfe:
            try:
                samplers.steps_for_nfe(self.name, nfe)
            except ValueError as exc:
                raise SpecError("nfe", str(exc)) from None
        return self


class EvaluationSpec(Spec):
    """What to measure. metric 'auto' is fd-<dataset> on digits / mnist / fashion-mnist (Fréchet
    distance in the project's classifier features) and fid otherwise. at: every kept snapshot or
    the final one only; inline: evaluate inside the training job as snapshots are written.
    Image seeds are seed_offset + 0 ... num_samples - 1."""

    metric: Metric = "auto"
    num_samples: PositiveInt = 50000
    batch: PositiveInt = 256
    samplers: tuple[SamplerSpec, ...] = Field(
        default=(SamplerSpec(name="heun", nfe=(35,)),), min_length=1)
    at: Literal["snapshots", "final"] = "snapshots"
    inline: Bool = True
    inception_path: str | None = None
    seed_offset: NonNegativeInt = 0

    @field_validator("samplers")
    @classmethod
    def _unique_names(cls, samplers: tuple[SamplerSpec, ...]) -> tuple[SamplerSpec, ...]:
        names = [s.name for s in samplers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"sampler '{name}' is listed twice; give one entry with all its NFE")
        return samplers


class LaunchSpec(Spec):
    """Where and how jobs run. None = the cluster profile's value (`slurm/profiles/<profile>.yaml`),
    else the executor's default (`harness.launch`). Does not enter the run_id.

    max_concurrent: simultaneous jobs (local subprocesses; SLURM array parallelism).
    additional_parameters: passed to SLURM as submitit's slurm_additional_parameters.
    """

    executor: Literal["local", "slurm", "debug"] = "local"
    profile: str | None = None
    nodes: PositiveInt | None = None
    tasks_per_node: PositiveInt | None = None
    gpus_per_node: NonNegativeInt | None = None
    cpus_per_task: PositiveInt | None = None
    mem_gb: PositiveFloat | None = None
    timeout_min: PositiveInt | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    signal_delay_s: PositiveInt | None = None
    max_num_timeout: NonNegativeInt | None = None
    max_concurrent: PositiveInt | None = None
    setup: tuple[str, ...] | None = None
    additional_parameters: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> LaunchSpec:
        if self.executor != "slurm" and (self.nodes or 1) > 1:
            raise SpecError("nodes", f"{self.nodes} nodes need executor 'slurm' "
                                     f"(executor '{self.executor}' runs on this machine only)")
        return self


class WandbSpec(Spec):
    mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "fdm-harness"
    entity: str | None = None
    tags: tuple[str, ...] = ()


class TrackingSpec(Spec):
    """The W&B mirror (the JSONL records are always written). Does not enter the run_id."""

    wandb: WandbSpec = WandbSpec()


# ------------------------------------------------------------------------------------ experiment

# Sections of a job that a grid axis may vary (`<section>.<field>`), and their models.
GRID_SECTIONS: dict[str, type[Spec]] = {
    "dataset": DatasetSpec,
    "network": NetworkSpec,
    "diffusion": DiffusionSpec,
    "training": TrainingSpec,
    "evaluation": EvaluationSpec,
}
# Varied through variants, never through a grid.
_NOT_GRIDDABLE = ("diffusion.kind",)
_NONE = object()


def grid_fields() -> list[str]:
    """Every dotted job field a grid axis may name."""
    fields = [f"{section}.{name}" for section, model in GRID_SECTIONS.items() for name in model.model_fields]
    return [f for f in fields if f not in _NOT_GRIDDABLE]


def _grid_hint(axis: str, known: list[str]) -> str:
    """Nearest job field, matched on the field name within its section ('training.lr_rampup_kimg'
    → 'training.lr_rampup_mimg'), else on the name alone ('lr' → 'training.lr')."""
    section, _, leaf = axis.rpartition(".")
    same_section = {f.split(".", 1)[1]: f for f in known if f.split(".", 1)[0] == section}
    candidates = same_section or {f.split(".", 1)[1]: f for f in known}
    match = re.search(r"'(.*)'", did_you_mean(leaf, candidates))
    return f"; did you mean '{candidates[match.group(1)]}'?" if match else ""


def _slug(value: str, what: str) -> str:
    if not _SLUG_RE.match(value):
        raise ValueError(f"{value!r} is not a valid {what}: use lowercase letters, digits, '-', '_' "
                         "and '.', starting with a letter or digit")
    return value


class ExperimentSpec(Spec):
    """One experiment: every variant × seed × grid point trained under the same conditions.

    The experiment directory is `out_root/name`. Grid axes name job fields
    (`training.lr`, `diffusion.damping`, ...); an axis over a parameter that a variant's kind
    does not use (`DIFFUSION_APPLIES_TO`) does not multiply that variant's jobs.
    """

    name: str
    out_root: str = "runs"
    description: str = ""
    dataset: DatasetSpec
    network: NetworkSpec
    training: TrainingSpec
    variants: dict[str, VariantSpec] = Field(min_length=1)
    seeds: tuple[Int, ...] = Field(min_length=1)
    grid: Annotated[dict[str, Annotated[tuple[Any, ...], Field(min_length=1)]], DottedKeys()] = Field(
        default_factory=dict)
    evaluation: EvaluationSpec = EvaluationSpec()
    launch: LaunchSpec = LaunchSpec()
    tracking: TrackingSpec = TrackingSpec()

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, name: str) -> str:
        return _slug(name, "experiment name")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            raise ValueError(f"{list(seeds)} repeats seed {repeated[0]}; seeds must be unique")
        return seeds

    @model_validator(mode="after")
    def _check(self) -> ExperimentSpec:
        for name in self.variants:
            if not _SLUG_RE.match(name):
                raise SpecError(f"variants.{name}", f"{name!r} is not a valid variant name: use lowercase "
                                                    "letters, digits, '-', '_' and '.'")
        known = grid_fields()
        for axis in self.grid:
            if axis not in known:
                hint = " (vary the kind through variants)" if axis in _NOT_GRIDDABLE else _grid_hint(axis, known)
                raise SpecError(f"grid.{axis}", f"unknown job field '{axis}'{hint}")
            values = self.grid[axis]
            repeated = next((v for i, v in enumerate(values) if v in values[:i]), _NONE)
            if repeated is not _NONE:
                raise SpecError(f"grid.{axis}", f"{list(values)} repeats the value {repeated!r}")
        self._check_grid_applies()
        self._check_patches_against_grid()
        return self

    def _check_grid_applies(self) -> None:
        kinds = {v.kind for v in self.variants.values()}
        for axis in self.grid:
            section, name = axis.split(".", 1)
            if section == "diffusion" and not kinds & set(DIFFUSION_APPLIES_TO[name]):
                raise SpecError(f"grid.{axis}", f"applies to kinds {', '.join(DIFFUSION_APPLIES_TO[name])} "
                                                f"and no variant has one of them")

    def _check_patches_against_grid(self) -> None:
        for vname, variant in self.variants.items():
            set_here = {f"diffusion.{k}" for k in variant.diffusion_params()}
            set_here |= {f"network.{k}" for k in variant.network or {}}
            set_here |= {f"training.{k}" for k in variant.training or {}}
            for axis in self.grid:
                if axis in set_here:
                    field = axis.split(".", 1)[1] if axis.startswith("diffusion.") else axis
                    raise SpecError(f"variants.{vname}.{field}", f"also a grid axis 'grid.{axis}', whose "
                                                                 "values would replace it; keep one of the two")

    @property
    def experiment_dir(self) -> Path:
        return Path(self.out_root) / self.name


# ------------------------------------------------------------------------------------------- job


class JobSpec(Spec):
    """One training run, fully resolved. `run_id` hashes everything but launch and tracking,
    so the same job always lands in the same run directory (relaunch resumes, never duplicates)."""

    experiment: str
    variant: str
    seed: Int
    overrides: dict[str, Any] = Field(default_factory=dict)
    dataset: DatasetSpec
    network: NetworkSpec
    diffusion: DiffusionSpec
    training: TrainingSpec
    evaluation: EvaluationSpec
    launch: LaunchSpec = LaunchSpec()
    tracking: TrackingSpec = TrackingSpec()

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        _check_resolved(self)
        _check_consistency(self)
        return self

    @property
    def run_id(self) -> str:
        """First 12 hex digits of sha256 over the canonical JSON of the result-determining fields."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:12]

    def canonical_json(self) -> str:
        data = self.model_dump(mode="json", exclude={"launch", "tracking"})
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)

    @property
    def label_dim(self) -> int:
        return self.dataset.num_classes if self.network.conditional else 0

    def to_yaml(self) -> str:
        return f"# resolved job spec of run {self.run_id}\n" + super().to_yaml()


def _check_resolved(job: JobSpec) -> None:
    for name in ("resolution", "channels", "num_classes", "use_labels"):
        if getattr(job.dataset, name) is None:
            raise SpecError(f"dataset.{name}", "must be concrete in a job spec (got null)")
    if job.network.augment_dim is None:
        raise SpecError("network.augment_dim", "must be concrete in a job spec (got null)")
    if job.evaluation.metric == "auto":
        raise SpecError("evaluation.metric", "'auto' must be resolved in a job spec")


def _check_consistency(job: JobSpec) -> None:
    """Checks across sections, in the words of the field a person would change."""
    net, data, train = job.network, job.dataset, job.training
    if net.conditional and not data.use_labels:
        raise SpecError("dataset.use_labels", "false, but network.conditional is true; a conditional "
                                              "network needs the labels")
    if net.conditional and data.num_classes == 0:
        raise SpecError("network.conditional", f"dataset '{data.name}' has no classes (num_classes 0)")
    if train.augment_p > 0 and net.augment_dim != 9:
        raise SpecError("network.augment_dim", f"{net.augment_dim}, but training.augment_p is "
                                               f"{train.augment_p}; augmentation needs augment_dim 9 "
                                               "(or leave it unset)")
    metric = job.evaluation.metric
    if metric.startswith("fd-") and metric != f"fd-{data.name}":
        raise SpecError("evaluation.metric", f"'{metric}' measures dataset '{metric[3:]}', not "
                                             f"'{data.name}'; use 'auto', 'fid'"
                                             + (f" or 'fd-{data.name}'" if data.name in FD_DATASETS else ""))
    if net.arch in ("ddpmpp", "ncsnpp") and net.channel_mult is not None:
        levels = len(net.channel_mult)
        if data.resolution % 2 ** (levels - 1):
            raise SpecError("network.channel_mult", f"{list(net.channel_mult)} has {levels} levels, so the "
                                                    f"resolution must be divisible by {2 ** (levels - 1)}; "
                                                    f"dataset resolution is {data.resolution}")
