"""`harness bench`: training and sampling throughput of a named network configuration."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    from harness.train.bench import CONFIGS, DEFAULT_CONFIG
    from harness.train.precision import PRECISIONS

    parser = subparsers.add_parser(
        "bench", help="throughput of training and sampling on this machine",
        description="Training-step and sampling throughput on synthetic data, after warm-up, "
                    "synchronised around the timed region. Prints images/s, ms/step, peak "
                    "memory and achieved TFLOP/s.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, choices=sorted(CONFIGS),
                        help=f"network configuration (default {DEFAULT_CONFIG}: the paper's "
                             "CIFAR-10 DDPM++ [2,2,2], class-conditional, batch 512)")
    parser.add_argument("--batch", type=int, default=None, help="global batch (default: the config's)")
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    parser.add_argument("--compile", action="store_true", help="torch.compile the network")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--fused", action="store_true", help="fused Adam")
    parser.add_argument("--kind", default=None, help="diffusion kind (default: the config's)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps")
    parser.add_argument("--sample-batch", type=int, default=None,
                        help="sampling batch (default: the training batch)")
    parser.add_argument("--sample-nfe", type=int, default=35,
                        help="network evaluations per sampled image (Heun; odd)")
    parser.add_argument("--no-sample", action="store_true", help="skip the sampling benchmark")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.train.bench import format_result, run_bench

    for name in ("batch", "steps", "sample_batch", "sample_nfe", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise HarnessError(f"--{name.replace('_', '-')}: {value} must be >= 1")
    if args.warmup < 0:
        raise HarnessError(f"--warmup: {args.warmup} must be >= 0")
    result = run_bench(args.config, batch=args.batch, precision=args.precision,
                       compile=args.compile, channels_last=args.channels_last, fused=args.fused,
                       device=args.device, warmup_steps=args.warmup, steps=args.steps,
                       sample=not args.no_sample, sample_batch=args.sample_batch,
                       sample_nfe=args.sample_nfe, kind=args.kind, threads=args.threads)
    print(json.dumps(result, indent=2) if args.json else format_result(result), flush=True)
    return 0
