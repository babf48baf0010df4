"""`harness bench` on the CPU with a small configuration (the paper's config needs a GPU)."""

from __future__ import annotations

import json

import pytest

from harness.cli import main

SMALL = ["bench", "--config", "small-digits", "--batch", "16", "--steps", "2", "--warmup", "1",
         "--sample-batch", "8", "--sample-nfe", "3", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def bench_json():
    import contextlib
    import io

    import torch

    threads = torch.get_num_threads()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*SMALL, "--json"]) == 0
    assert torch.get_num_threads() == threads  # --threads is restored afterwards
    return json.loads(out.getvalue())


def test_bench_json_has_every_field_present_and_positive(bench_json):
    assert bench_json["config"] == "small-digits" and bench_json["device"] == "cpu"
    assert (bench_json["batch"], bench_json["steps"], bench_json["precision"]) == (16, 2, "fp32")
    for section in ("train", "sample"):
        assert set(bench_json[section]) >= {"img_per_s", "peak_mem_gb", "tflops"}
        for key, value in bench_json[section].items():
            assert isinstance(value, (int, float)) and value > 0, (section, key, value)
    assert set(bench_json["train"]) == {"img_per_s", "ms_per_step", "peak_mem_gb",
                                        "gflop_per_img", "tflops"}
    assert bench_json["sample"]["nfe"] == 3 and bench_json["sample"]["batch"] == 8
    assert bench_json["params"] > 0 and bench_json["threads"] == 1


def test_bench_speed_fields_are_consistent(bench_json):
    train = bench_json["train"]
    assert train["img_per_s"] == pytest.approx(16 / (train["ms_per_step"] / 1e3), rel=1e-9)
    # achieved TFLOP/s = counted FLOPs per image × images per second
    assert train["tflops"] == pytest.approx(train["gflop_per_img"] * train["img_per_s"] / 1e3,
                                            rel=1e-9)
    # a training step costs about three forward passes (backward ≈ 2× forward)
    ratio = train["gflop_per_img"] / bench_json["sample"]["gflop_per_eval"]
    assert 2.5 < ratio < 3.05


def test_bench_key_matches_the_specs_benchmark_table_format(bench_json):
    key = bench_json["benchmark_key"]
    assert key == f"small-{bench_json['params']}p-8px-fp32-cpu"


def test_bench_text_output_and_bad_arguments(capsys):
    assert main([*SMALL, "--no-sample"]) == 0
    text = capsys.readouterr().out
    assert "img/s" in text and "ms/step" in text and "sample:" not in text
    assert main(["bench", "--config", "small-digits", "--steps", "0"]) == 2
    assert "--steps: 0 must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--config", "cifar-10"])
    assert exit_info.value.code == 2
