"""`harness bench`: throughput of the training step and of sampling on synthetic data.

The training step measured is the training loop's own `train_step` (same σ sampling, loss,
accumulation, Adam, EMA), on random images that already sit on the device, so the numbers are
the network's and the step's cost, not the data path's. After `warmup_steps` untimed steps the
device is synchronised, `steps` steps are timed, and the device is synchronised again.

FLOPs are counted once with `torch.utils.flop_counter.FlopCounterMode` on the eager network
(one training step, one sampling forward); achieved TFLOP/s = counted FLOPs / measured time.
"""

from __future__ import annotations

import datetime as _dt
import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch

from harness.errors import HarnessError, did_you_mean
from harness.records import RunPaths
from harness.tracking import MultiTracker
from harness.train import distributed as ddp
from harness.train.build import maybe_compile
from harness.train.precision import autocast, precision_mode, tf32_enabled
from harness.train.seeding import PURPOSE_BENCH, make_generator

# Named network configurations, as partial experiment specs (the specs package fills in the
# architecture defaults exactly as it does for a real experiment).
CONFIGS: dict[str, dict[str, Any]] = {
    # The paper's CIFAR-10 EDM / EDM-FDM pair: DDPM++ [2,2,2], class-conditional, 55,735,299 params.
    "cifar10-ddpmpp": {"dataset": {"name": "cifar10"},
                       "network": {"arch": "ddpmpp", "conditional": True, "dropout": 0.13},
                       "training": {"batch": 512, "augment_p": 0.12}, "kind": "edm"},
    # The CIFAR-10 VP pair: DDPM++ [1,2,2,2], 61,806,979 params.
    "cifar10-ddpmpp-1222": {"dataset": {"name": "cifar10"},
                            "network": {"arch": "ddpmpp", "conditional": True, "dropout": 0.13,
                                        "channel_mult": [1, 2, 2, 2]},
                            "training": {"batch": 512, "augment_p": 0.12}, "kind": "vp"},
    # The CIFAR-10 VE pair: NCSN++ [1,2,2,2], 62,763,907 params.
    "cifar10-ncsnpp": {"dataset": {"name": "cifar10"},
                       "network": {"arch": "ncsnpp", "conditional": True, "dropout": 0.13,
                                   "channel_mult": [1, 2, 2, 2]},
                       "training": {"batch": 512, "augment_p": 0.12}, "kind": "ve"},
    # The CPU configurations of the small experiments.
    "small-digits": {"dataset": {"name": "digits"},
                     "network": {"arch": "small", "conditional": False},
                     "training": {"batch": 128}, "kind": "edm"},
    "small-mnist": {"dataset": {"name": "mnist"},
                    "network": {"arch": "small", "conditional": False},
                    "training": {"batch": 128}, "kind": "edm"},
}
DEFAULT_CONFIG = "cifar10-ddpmpp"


def bench_job(config: str, *, batch: int | None = None, precision: str = "fp32",
              compile: bool = False, channels_last: bool = False, fused: bool = False,
              kind: str | None = None) -> Any:
    """The resolved JobSpec of a named configuration (no data file is read)."""
    from harness.specs import ExperimentSpec, expand, validate_model

    if config not in CONFIGS:
        raise HarnessError(f"unknown bench configuration '{config}'"
                           f"{did_you_mean(config, CONFIGS)}; choose from {sorted(CONFIGS)}")
    preset = CONFIGS[config]
    training = {"duration_mimg": 1.0, "lr": 1e-3, "lr_rampup_mimg": 0.0, **preset["training"],
                "precision": precision, "compile": compile, "channels_last": channels_last,
                "fused_optimizer": fused}
    if batch is not None:
        training["batch"] = batch
    kind = kind or preset["kind"]
    variant: dict[str, Any] = {"kind": kind}
    if kind.startswith("fdm-"):
        variant.update(multiplier=1.0 if kind == "fdm-ve" else 2.0, warmup_kimg=102.4)
    spec = validate_model(ExperimentSpec, {
        "name": "bench", "dataset": preset["dataset"], "network": preset["network"],
        "training": training, "variants": {kind: variant}, "seeds": [0],
        "tracking": {"wandb": {"mode": "disabled"}}})
    return expand(spec)[0]


@dataclass
class SyntheticData:
    """Random uint8 images (and labels) on the device, behaving like harness.data.DeviceDataset."""

    images: torch.Tensor
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor):
        from harness.data import to_float

        indices = indices.to(self.images.device)
        labels = None if self.labels is None else self.labels.index_select(0, indices)
        return to_float(self.images.index_select(0, indices)), labels


def synthetic_data(job: Any, device: torch.device, num_images: int) -> SyntheticData:
    generator = make_generator(job.seed, PURPOSE_BENCH, device="cpu")
    shape = (num_images, job.dataset.channels, job.dataset.resolution, job.dataset.resolution)
    images = torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
    labels = None
    if job.label_dim:
        labels = torch.randint(0, job.label_dim, (num_images,), generator=generator)
        labels = labels.to(device)
    return SyntheticData(images.to(device), labels)


# ---------------------------------------------------------------------------------- measuring


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_gb(device: torch.device) -> float:
    """Peak device memory on a GPU; peak resident memory of this process on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


def _timed(device: torch.device, fn, repeats: int) -> float:
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return time.perf_counter() - start


def _count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_training(job: Any, device: torch.device, *, warmup_steps: int, steps: int) -> tuple[dict, Any]:
    """Images/s, ms/step, peak memory and TFLOP/s of the training step; returns the state too."""
    from harness.train import loop

    data = synthetic_data(job, device, num_images=max(2 * job.training.batch, 256))
    env = ddp.DistEnv()
    ctx = loop.TrainContext(job=job, paths=RunPaths("."), env=env, device=device,
                            precision=precision_mode(job.training.precision),
                            plan=loop.make_plan(job.training.batch, None, 0, 1),
                            total_nimg=10**12, data=data, augment=loop.make_augment(
                                job.training.augment_p), tracker=MultiTracker([]))
    state = loop.build_state(ctx)
    state.nimg = 10 * job.training.batch  # past lr 0 and EMA beta 0: a typical step
    for _ in range(warmup_steps):
        loop.train_step(ctx, state)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _timed(device, lambda: loop.train_step(ctx, state), steps)
    peak = _peak_memory_gb(device)
    compiled, state.model.compiled = state.model.compiled, None  # count on the eager network
    flops = _count_flops(lambda: loop.train_step(ctx, state))
    state.model.compiled = compiled
    batch = job.training.batch
    return {"img_per_s": batch * steps / seconds, "ms_per_step": 1e3 * seconds / steps,
            "peak_mem_gb": peak, "gflop_per_img": flops / batch / 1e9,
            "tflops": flops * steps / seconds / 1e12}, state


def bench_sampling(job: Any, ema: torch.nn.Module, device: torch.device, *, batch: int,
                   nfe: int, compile: bool) -> dict:
    """Images/s of Heun sampling at `nfe` network evaluations per image (EDM's σ grid)."""
    from harness.diffusion import edm_sigmas, samplers, sigma_range

    num_steps = samplers.steps_for_nfe("heun", nfe)
    sigma_min, sigma_max = sigma_range(job.diffusion.kind)
    sigmas = edm_sigmas(num_steps, sigma_min, sigma_max)
    precision = precision_mode(job.training.precision)
    generator = make_generator(job.seed, PURPOSE_BENCH, 1, device=device)
    shape = (batch, job.dataset.channels, job.dataset.resolution, job.dataset.resolution)
    labels = None
    if job.label_dim:
        index = torch.randint(0, job.label_dim, (batch,), generator=generator, device=device)
        labels = torch.nn.functional.one_hot(index, job.label_dim).to(torch.float32)
    network = maybe_compile(ema.eval(), compile)

    def denoiser(x: torch.Tensor, sigma: Any) -> torch.Tensor:
        sigma_t = torch.as_tensor(sigma, dtype=torch.float32, device=device).expand(x.shape[0])
        with autocast(precision, device):
            return network(x, sigma_t, class_labels=labels).to(torch.float32)

    def sample() -> torch.Tensor:
        x = torch.randn(shape, generator=generator, device=device) * float(sigmas[0])
        with torch.no_grad():
            return samplers.heun(denoiser, x, sigmas)

    sample()  # warm-up (and compilation)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _timed(device, sample, 1)
    x0 = torch.randn(shape, generator=generator, device=device)
    eager, network.compiled = network.compiled, None
    with torch.no_grad():
        flops_per_eval = _count_flops(lambda: denoiser(x0, 1.0))
    network.compiled = eager
    return {"img_per_s": batch / seconds, "ms_per_batch": 1e3 * seconds, "batch": batch,
            "nfe": samplers.nfe("heun", num_steps), "peak_mem_gb": _peak_memory_gb(device),
            "gflop_per_eval": flops_per_eval / batch / 1e9,
            "tflops": flops_per_eval * samplers.nfe("heun", num_steps) / seconds / 1e12}


def run_bench(config: str = DEFAULT_CONFIG, *, batch: int | None = None, precision: str = "fp32",
              compile: bool = False, channels_last: bool = False, fused: bool = False,
              device: str | None = None, warmup_steps: int = 3, steps: int = 10,
              sample: bool = True, sample_batch: int | None = None, sample_nfe: int = 35,
              kind: str | None = None, threads: int | None = None) -> dict:
    """Measure one configuration; returns a JSON-ready dict (see docs/benchmarks.md)."""
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run_bench(config, batch=batch, precision=precision, compile=compile,
                          channels_last=channels_last, fused=fused, device=device,
                          warmup_steps=warmup_steps, steps=steps, sample=sample,
                          sample_batch=sample_batch, sample_nfe=sample_nfe, kind=kind)
    finally:
        torch.set_num_threads(previous_threads)


def _run_bench(config: str, *, batch: int | None, precision: str, compile: bool,
               channels_last: bool, fused: bool, device: str | None, warmup_steps: int,
               steps: int, sample: bool, sample_batch: int | None, sample_nfe: int,
               kind: str | None) -> dict:
    from harness.nets import count_parameters
    from harness.specs import benchmark_key

    job = bench_job(config, batch=batch, precision=precision, compile=compile,
                    channels_last=channels_last, fused=fused, kind=kind)
    torch_device = ddp.pick_device(ddp.DistEnv(), device)
    with tf32_enabled(precision_mode(precision).tf32):
        train_stats, state = bench_training(job, torch_device, warmup_steps=warmup_steps,
                                            steps=steps)
        params = count_parameters(state.net)
        result = {
            "config": config, "arch": job.network.arch, "kind": job.diffusion.kind,
            "params": params, "resolution": job.dataset.resolution,
            "batch": job.training.batch, "precision": precision, "compile": compile,
            "channels_last": channels_last, "fused_optimizer": fused,
            "device": torch_device.type, "device_name": _device_name(torch_device),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "date": _dt.date.today().isoformat(), "warmup_steps": warmup_steps, "steps": steps,
            "benchmark_key": benchmark_key(job.model_copy(update={"training": job.training.model_copy(
                update={"device": torch_device.type})}), params),
            "train": train_stats,
        }
        if sample:
            result["sample"] = bench_sampling(job, state.ema, torch_device,
                                              batch=sample_batch or job.training.batch,
                                              nfe=sample_nfe, compile=compile)
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()


def format_result(result: dict) -> str:
    t = result["train"]
    lines = [f"{result['config']} ({result['arch']}, {result['params']:,} params, "
             f"{result['resolution']}px) batch {result['batch']} {result['precision']}"
             f"{' compile' if result['compile'] else ''}"
             f"{' channels_last' if result['channels_last'] else ''} on {result['device_name']}",
             f"  train : {t['img_per_s']:9.1f} img/s  {t['ms_per_step']:9.1f} ms/step  "
             f"peak {t['peak_mem_gb']:.2f} GB  {t['tflops']:.3g} TFLOP/s "
             f"({t['gflop_per_img']:.3g} GFLOP/img)"]
    if "sample" in result:
        s = result["sample"]
        lines.append(f"  sample: {s['img_per_s']:9.1f} img/s  at {s['nfe']} NFE, batch "
                     f"{s['batch']}  peak {s['peak_mem_gb']:.2f} GB  {s['tflops']:.3g} TFLOP/s")
    return "\n".join(lines)

