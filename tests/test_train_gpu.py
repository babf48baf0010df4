"""The speed switches on a CUDA device keep the math (skipped without a GPU)."""

from __future__ import annotations

import math

import pytest
import torch

from harness.records import read_metrics
from harness.tracking import RecordingTracker
from harness.train import train
from tests.test_train import tiny_job

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _losses(tmp_path, name: str, **training) -> list[float]:
    run_dir = tmp_path / name
    train(tiny_job(steps=4, training={"device": "cuda", **training}), run_dir,
          tracker=RecordingTracker())
    return [m["loss"] for m in read_metrics(run_dir)]


def test_compiled_step_matches_the_eager_step_on_cuda(tmp_path):
    eager = _losses(tmp_path, "eager")
    compiled = _losses(tmp_path, "compiled", compile=True)
    assert compiled == pytest.approx(eager, rel=1e-3)


def test_bf16_channels_last_fused_adam_stays_close_to_fp32_on_cuda(tmp_path):
    fp32 = _losses(tmp_path, "fp32")
    fast = _losses(tmp_path, "fast", precision="bf16", channels_last=True, fused_optimizer=True)
    assert all(math.isfinite(v) for v in fast)
    assert fast == pytest.approx(fp32, rel=0.05)


def test_bench_on_cuda_reports_positive_tflops_for_the_paper_network():
    from harness.train.bench import run_bench

    result = run_bench("cifar10-ddpmpp", batch=32, precision="bf16", warmup_steps=1, steps=2,
                       sample_batch=32, sample_nfe=3, device="cuda")
    assert result["params"] == 55_735_299
    assert all(v > 0 for v in result["train"].values())
    assert all(v > 0 for v in result["sample"].values())
