"""Trackers: where a run's progress goes. JSONL records always; W&B and a display as mirrors.

`harness.tracking.wandb` is the only module that imports wandb; importing this package does not.
"""

from harness.tracking.base import JsonlTracker, MultiTracker, RecordingTracker, Tracker
from harness.tracking.progress import ProgressTracker

__all__ = ["JsonlTracker", "MultiTracker", "ProgressTracker", "RecordingTracker", "Tracker"]
