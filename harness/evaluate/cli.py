"""`harness eval RUN_DIR [--sampler heun --nfe 9,17,35 --num-samples N ...]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import HarnessError


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of integers")
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"'{text}': NFE values must be positive integers")
    return values


def _name_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate the snapshots of a run (FID / fd-<dataset>, NFE sweeps)",
        description="Generate images from each snapshot's EMA network with each sampler at each "
                    "NFE, measure them against the dataset's reference statistics, and append "
                    "one line per (snapshot, sampler, NFE) to RUN_DIR/evals.jsonl. Entries "
                    "already there are skipped. Defaults come from the run's evaluation spec.")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run directory (runs/<run_id>)")
    parser.add_argument("--sampler", type=_name_list, metavar="NAME[,NAME]",
                        help="samplers: heun, euler, dpmpp_2m, dpmpp_3s (default: the spec's)")
    parser.add_argument("--nfe", type=_int_list, metavar="N[,N]",
                        help="network evaluations per image, e.g. 9,17,35 (default: the spec's)")
    parser.add_argument("--num-samples", type=int, metavar="N", help="images per evaluation")
    parser.add_argument("--batch", type=int, metavar="B", help="images per generation batch")
    parser.add_argument("--snapshots", choices=("all", "latest"),
                        help="every snapshot (training-cost axis) or the latest checkpoint")
    parser.add_argument("--metric", metavar="NAME",
                        help="fid, fd-digits, fd-mnist, fd-fashion-mnist (default: the spec's)")
    parser.add_argument("--inception", type=Path, metavar="PATH",
                        help="pt_inception-2015-12-05-6726825d.pth (for fid)")
    parser.add_argument("--ref", type=Path, metavar="NPZ",
                        help="reference statistics npz with mu/sigma (e.g. EDM's fid-refs)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--no-grids", action="store_true", help="do not save sample grids")
    parser.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from harness.evaluate.plans import evaluate_run

    for name in ("num_samples", "batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise HarnessError(f"--{name.replace('_', '-')}: {value} must be >= 1")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    records = evaluate_run(args.run_dir, samplers=args.sampler, nfe=args.nfe,
                           num_samples=args.num_samples, batch=args.batch,
                           snapshots=args.snapshots, metric=args.metric,
                           inception_path=args.inception, reference_path=args.ref,
                           device=device, save_grids=not args.no_grids)
    for r in records:
        floor = "" if r.get("floor") is None else f"  floor {r['floor']:.4g}"
        kid = "" if r.get("kid") is None else f"  kid {r['kid']:.4g}"
        print(f"nimg {r['nimg']:>10}  {r['sampler']:>8} nfe {r['nfe']:>3}  "
              f"{r['metric']} {r['value']:.4g}{floor}{kid}  ({r['num_samples']} images, "
              f"{r['wall_s']:.1f} s)")
    if not records:
        print(f"{args.run_dir}: nothing to evaluate (every requested entry is in evals.jsonl)")
    return 0
