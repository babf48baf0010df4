"""`harness run`, `harness status`, `harness cancel`: thin commands over harness.launch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.launch.executors import EXECUTOR_KINDS


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run", help="expand an experiment spec into jobs and launch them",
        description="Expand SPEC into one job per variant x grid point x seed, launch them through "
                    "the executor, and watch them (a relaunch skips finished runs and resumes the rest).")
    run.add_argument("spec", type=Path, metavar="SPEC", help="experiment spec (YAML)")
    run.add_argument("--executor", choices=EXECUTOR_KINDS, help="override launch.executor")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="A.B=VALUE",
                     help="override a spec field (VALUE is YAML); repeatable")
    run.add_argument("--dry-run", action="store_true", help="print the job table; launch nothing")
    run.add_argument("--out", type=Path, metavar="DIR", help="output root (overrides out_root)")
    run.add_argument("--detach", action="store_true",
                     help="return once submitted (local jobs: a background launcher keeps them going)")
    run.set_defaults(func=cmd_run)

    status = subparsers.add_parser("status", help="one row per job of an experiment",
                                   description="State, images seen, last metric and error of each job.")
    status.add_argument("experiment_dir", type=Path, metavar="EXPERIMENT_DIR")
    status.set_defaults(func=cmd_status)

    cancel = subparsers.add_parser("cancel", help="cancel the unfinished jobs of an experiment")
    cancel.add_argument("experiment_dir", type=Path, metavar="EXPERIMENT_DIR")
    cancel.set_defaults(func=cmd_cancel)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.launch.executors import check_executor_kind
    from harness.launch.launcher import launch_experiment
    from harness.specs import dry_run_table, expand, load_experiment

    spec = load_experiment(args.spec, args.overrides)
    kind = args.executor or spec.launch.executor
    if args.dry_run:
        print(dry_run_table(spec, expand(spec)))
        return 0
    # launch_experiment checks everything (profile, dataset file, executor) before it creates a
    # directory; the executor is checked here first only to name the flag when it came from one.
    check_executor_kind(kind, field_name="--executor" if args.executor else "launch.executor")
    records = launch_experiment(spec, executor_kind=kind, out_root=args.out, wait=not args.detach)
    if args.detach:
        _print_detached(records)
        return 0
    unfinished = [r for r in records if r.state != "completed"]
    return 1 if unfinished else 0


def _print_detached(records) -> None:
    from harness.launch.display import format_table

    print(format_table(("run_id", "variant", "seed", "state", "job_id"),
                       [(r.run_id, r.variant, r.seed, r.state, r.job_id or "") for r in records]))
    extra = records[0].extra if records else {}
    if "launcher_log" in extra:
        print(f"background launcher pid {extra['launcher_pid']}, log {extra['launcher_log']}")
    if records:
        print(f"records: {Path(records[0].run_dir).parent.parent}")


def cmd_status(args: argparse.Namespace) -> int:
    from harness.launch.display import format_kimg, format_table
    from harness.launch.status import experiment_status

    records = experiment_status(args.experiment_dir)
    rows = [(r.run_id, r.variant, r.seed, r.state, r.job_id or "", format_kimg(r.nimg), r.metric, r.error)
            for r in records]
    print(format_table(("run_id", "variant", "seed", "state", "job_id", "images", "last metric", "error"),
                       rows))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from harness.launch.status import cancel_experiment

    cancelled = cancel_experiment(args.experiment_dir)
    for r in cancelled:
        print(f"cancelled {r.run_id} ({r.variant}, seed {r.seed}) job {r.job_id or '-'}")
    print(f"{len(cancelled)} job(s) cancelled", file=sys.stderr)
    return 0
