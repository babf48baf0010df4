"""`python -m harness.train RUN_DIR [--spec SPEC]`: train one job in this process.

The entry point for torchrun (`torchrun --nproc_per_node=N -m harness.train RUN_DIR`), sbatch
scripts and the tests' subprocesses. SIGTERM / SIGUSR1 checkpoint at the next step boundary.

Exit status: 0 done; 75 (EXIT_PREEMPTED) stopped by a signal after writing a checkpoint, requeue
to resume; 2 bad spec or input; 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from harness.errors import HarnessError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.train", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="the run directory (created if needed)")
    parser.add_argument("--spec", type=Path, default=None,
                        help="resolved job spec YAML (default: RUN_DIR/spec.yaml)")
    parser.add_argument("--device", default=None, help="override training.device (cpu, cuda)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress display (the JSONL records are always written)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from harness.specs import JobSpec
    from harness.train import install_signal_handlers, train
    from harness.train.loop import default_mirrors

    stop = install_signal_handlers()
    try:
        spec_path = args.spec or args.run_dir / "spec.yaml"
        if not spec_path.is_file():
            raise HarnessError(f"{spec_path}: no job spec; pass --spec or write RUN_DIR/spec.yaml")
        job = JobSpec.from_yaml(spec_path)
        tracker = None
        if args.no_progress:
            from harness.records import RunPaths
            from harness.tracking import MultiTracker, ProgressTracker

            mirrors = [m for m in default_mirrors(job, RunPaths(args.run_dir))
                       if not isinstance(m, ProgressTracker)]
            tracker = MultiTracker(mirrors)
        result = train(job, args.run_dir, tracker=tracker, device=args.device, stop=stop)
    except HarnessError as exc:
        print(f"harness.train: error: {exc}", file=sys.stderr)
        return 2
    finally:
        stop.restore()
    print(f"{result.status}: run {result.run_id} at {result.nimg} images "
          f"({result.checkpoint})", flush=True)
    return result.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
