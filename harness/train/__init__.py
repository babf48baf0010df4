"""The training job: `train(job, run_dir, *, tracker=None, device=None, stop=None) -> TrainResult`.

Resumable (checkpoints every `training.checkpoint_kimg`, resume = call again), data parallel
(torch.distributed from the environment), preemptible (`install_signal_handlers()` makes a `stop`
callable that SIGTERM / SIGUSR1 set; a stopped run returns status "preempted", exit status
`EXIT_PREEMPTED` = 75 from `python -m harness.train`). See docs/training.md.
"""

from harness.train.build import build_denoiser
from harness.train.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    choose_resume_checkpoint,
    load_checkpoint,
)
from harness.train.loop import TrainResult, total_nimg, train
from harness.train.preemption import EXIT_PREEMPTED, StopFlag, install_signal_handlers
from harness.train.schedules import ema_beta, learning_rate, loss_weight_cap

__all__ = [
    "EXIT_PREEMPTED", "FORMAT_VERSION", "CheckpointError", "StopFlag", "TrainResult",
    "build_denoiser", "choose_resume_checkpoint", "ema_beta", "install_signal_handlers",
    "learning_rate", "load_checkpoint", "loss_weight_cap", "total_nimg", "train",
]
