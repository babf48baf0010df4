"""The dry-run table: one row per job with what it costs before anything runs.

Parameter counts come from building the backbone on the `meta` device (no memory, no init
cost) through harness.nets, once per distinct network. Device-hours come from a measured
training throughput in docs/benchmarks.json (`{benchmark_key: images_per_s}`), keyed by
`benchmark_key(job, parameter_count)`; without a matching entry the column shows '-'.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from harness.specs.models import ExperimentSpec, JobSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BENCHMARKS = REPO_ROOT / "docs" / "benchmarks.json"


def backbone_kwargs(job: JobSpec) -> dict[str, Any]:
    """Keyword arguments of harness.nets.build_backbone for this job's network."""
    from harness.nets import ARCH_DEFAULTS

    net = job.network
    kwargs: dict[str, Any] = {
        "arch": net.arch,
        "img_resolution": job.dataset.resolution,
        "img_channels": job.dataset.channels,
        "label_dim": job.label_dim,
        "augment_dim": net.augment_dim,
    }
    for name in ARCH_DEFAULTS[net.arch]:
        value = getattr(net, name)
        kwargs[name] = list(value) if isinstance(value, tuple) else value
    return kwargs


def parameter_count(job: JobSpec) -> int:
    """Trainable parameters of the job's backbone (built on the meta device, cached per network)."""
    return _count_cached(json.dumps(backbone_kwargs(job), sort_keys=True))


@functools.lru_cache(maxsize=256)
def _count_cached(kwargs_json: str) -> int:
    import torch

    from harness.nets import build_backbone, count_parameters

    with torch.device("meta"):
        module = build_backbone(**json.loads(kwargs_json))
    return count_parameters(module)


def benchmark_key(job: JobSpec, num_params: int) -> str:
    """'<arch>-<params>p-<res>px-<precision>-<device>', e.g. 'ddpmpp-55735299p-32px-fp32-cuda'.

    The device is the training device, or 'cuda' when it is 'auto' and the job asks for GPUs.
    """
    device = job.training.device
    if device == "auto":
        device = "cuda" if (job.launch.gpus_per_node or 0) > 0 else "cpu"
    return f"{job.network.arch}-{num_params}p-{job.dataset.resolution}px-{job.training.precision}-{device}"


def load_benchmarks(path: str | Path | None = None) -> dict[str, float]:
    """{benchmark_key: training images/s}; keys starting with '_' (notes) are skipped."""
    path = Path(path) if path is not None else DEFAULT_BENCHMARKS
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: float(v) for k, v in data.items() if not k.startswith("_") and isinstance(v, (int, float))}


def dry_run_rows(jobs: list[JobSpec], benchmarks: dict[str, float]) -> list[dict[str, Any]]:
    rows = []
    for job in jobs:
        params = parameter_count(job)
        nimg = round(job.training.duration_mimg * 1e6)
        images_per_s = benchmarks.get(benchmark_key(job, params))
        rows.append({
            "run_id": job.run_id,
            "variant": job.variant,
            "kind": job.diffusion.kind,
            "seed": job.seed,
            "overrides": job.overrides,
            "params": params,
            "nimg": nimg,
            "device_hours": nimg / images_per_s / 3600 if images_per_s else None,
        })
    return rows


def dry_run_table(spec: ExperimentSpec, jobs: list[JobSpec], *, benchmarks_path: str | Path | None = None) -> str:
    """A plain-text table, one row per job: run_id, variant, kind, seed, overrides, parameters,
    images to train, estimated device-hours ('-' without a benchmark)."""
    rows = dry_run_rows(jobs, load_benchmarks(benchmarks_path))
    header = ["run_id", "variant", "kind", "seed", "overrides", "params", "images", "device-h"]
    body = [[r["run_id"], r["variant"], r["kind"], str(r["seed"]), _format_overrides(r["overrides"]),
             f"{r['params']:,}", _format_nimg(r["nimg"]),
             "-" if r["device_hours"] is None else f"{r['device_hours']:.1f}"] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]
    right = {"seed", "params", "images", "device-h"}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if h in right else c.ljust(w)
                         for c, w, h in zip(cells, widths, header)).rstrip()

    total_nimg = sum(r["nimg"] for r in rows)
    known = [r["device_hours"] for r in rows if r["device_hours"] is not None]
    footer = (f"{len(rows)} job(s) of experiment '{spec.name}' ({len(spec.variants)} variant(s)) → "
              f"{spec.experiment_dir}; {_format_nimg(total_nimg)} images to train")
    if known:
        footer += f"; {sum(known):.1f} device-hours for the {len(known)} job(s) with a benchmark"
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, body), footer])


def _format_overrides(overrides: dict[str, Any]) -> str:
    if not overrides:
        return "-"
    return ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in overrides.items())


def _format_nimg(nimg: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if nimg >= scale:
            return f"{nimg / scale:g}{unit}"
    return str(nimg)
