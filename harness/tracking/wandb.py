"""The Weights & Biases mirror of a run's records. The only module that imports wandb.

W&B is a mirror, never the source of truth (shared/DESIGN.md): every call into wandb is guarded,
and the first failure is logged as a warning and switches the mirror off for the rest of the run,
so training and the JSONL records go on untouched.

Run identity: W&B run id = the harness run_id (a requeued or resumed job continues the same W&B
run, `resume="allow"`), group = experiment name, job_type = variant, config = resolved job spec.
Mode: offline unless the spec or `WANDB_MODE` says otherwise (see `resolve_mode`).

`read_offline_run` reads back what an offline run wrote: wandb 0.31 ships no Python reader for its
`.wandb` transaction log, so this module decodes the framing itself (see `iter_wandb_records`).
"""

from __future__ import annotations

import json
import logging
import os
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("harness.tracking")

MODES = ("online", "offline", "disabled")


def resolve_mode(spec_mode: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The W&B mode of a run: the spec's when it names one, else `WANDB_MODE`, else offline.

    `WANDB_MODE=dryrun` is W&B's old name for offline and is read as such.
    """
    if spec_mode is not None:
        if spec_mode not in MODES:
            raise ValueError(f"tracking mode {spec_mode!r}: must be one of {MODES}")
        return spec_mode
    env_mode = (environ if environ is not None else os.environ).get("WANDB_MODE", "").strip()
    if env_mode == "dryrun":
        return "offline"
    return env_mode if env_mode in MODES else "offline"


class WandbTracker:
    """A `Tracker` that mirrors a run to W&B; any W&B failure is a warning, never an error."""

    def __init__(self, project: str, *, entity: str | None = None, mode: str | None = None,
                 directory: str | Path | None = None, tags: Sequence[str] = (),
                 init: Callable[..., Any] | None = None):
        self.project = project
        self.entity = entity
        self.mode = resolve_mode(mode)
        self.directory = Path(directory) if directory is not None else None
        self.tags = list(tags)
        self._init = init  # injectable for tests; wandb.init by default
        self._run: Any = None
        self.failed: str | None = None  # the first failure, once the mirror is switched off

    @property
    def active(self) -> bool:
        return self._run is not None

    def _guard(self, what: str, call: Callable[[], Any]) -> Any:
        if self.failed is not None:
            return None
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - the mirror must never stop training
            self.failed = f"{what}: {type(exc).__name__}: {exc}"
            self._run = None
            log.warning("W&B %s failed (%s: %s); W&B is off for this run, the JSONL records "
                        "continue", what, type(exc).__name__, exc)
            return None

    def start(self, run_id: str, group: str, job_type: str, config: Mapping[str, Any]) -> None:
        if self.mode == "disabled":
            return

        def init() -> Any:
            if self.directory is not None:
                self.directory.mkdir(parents=True, exist_ok=True)
            init_fn = self._init
            if init_fn is None:
                import wandb

                init_fn = wandb.init
            return init_fn(id=run_id, resume="allow", project=self.project, entity=self.entity,
                           group=group, job_type=job_type, config=dict(config), tags=self.tags,
                           mode=self.mode,
                           dir=str(self.directory) if self.directory is not None else None)

        self._run = self._guard("init", init)

    def log(self, metrics: Mapping[str, Any], *, step: int) -> None:
        if self._run is not None:
            run = self._run
            self._guard("log", lambda: run.log(dict(metrics), step=int(step)))

    def summary(self, values: Mapping[str, Any]) -> None:
        if self._run is not None:
            run = self._run
            self._guard("summary", lambda: run.summary.update(dict(values)))

    def finish(self, exit_code: int = 0) -> None:
        if self._run is not None:
            run = self._run
            self._guard("finish", lambda: run.finish(exit_code=int(exit_code)))
            self._run = None


def teardown() -> None:
    """Stop this process's wandb service (it outlives `run.finish()`); for tests and launchers."""
    try:
        import wandb

        wandb.teardown()
    except Exception as exc:  # noqa: BLE001
        log.warning("wandb.teardown failed: %s", exc)


# ------------------------------------------------------------------- reading an offline run back

# The .wandb file: a 7-byte header (b":W&B", magic 0xBEE1 as uint16 LE, version uint8), then
# LevelDB log framing in 32 KiB blocks. Each chunk has a 7-byte header (masked CRC-32C uint32,
# length uint16, type uint8: 1 full, 2 first, 3 middle, 4 last); a block tail shorter than a chunk
# header is zero padding. The payloads, reassembled, are serialised `wandb_internal_pb2.Record`s.
_FILE_HEADER = struct.Struct("<4sHB")
_CHUNK_HEADER = struct.Struct("<IHB")
_BLOCK_SIZE = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_wandb_payloads(data: bytes) -> Iterator[bytes]:
    """The record payloads of a .wandb file's bytes (CRC not checked; a torn tail is dropped)."""
    if len(data) < _FILE_HEADER.size:
        raise ValueError("not a .wandb file: shorter than its header")
    magic, magic_number, _version = _FILE_HEADER.unpack_from(data, 0)
    if magic != b":W&B" or magic_number != 0xBEE1:
        raise ValueError("not a .wandb file: bad magic")
    offset, pending = _FILE_HEADER.size, bytearray()
    while offset + _CHUNK_HEADER.size <= len(data):
        block_left = _BLOCK_SIZE - offset % _BLOCK_SIZE
        if block_left < _CHUNK_HEADER.size:
            offset += block_left  # zero padding at a block's end
            continue
        _crc, length, kind = _CHUNK_HEADER.unpack_from(data, offset)
        start = offset + _CHUNK_HEADER.size
        if kind == 0 or start + length > len(data):
            return  # unwritten space or a record torn by a kill
        chunk, offset = data[start:start + length], start + length
        if kind == _FULL:
            yield bytes(chunk)
        elif kind == _FIRST:
            pending = bytearray(chunk)
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield bytes(pending + chunk)
            pending = bytearray()


@dataclass
class OfflineRun:
    """What an offline W&B run recorded, decoded from its .wandb file."""

    path: Path
    run_id: str = ""
    project: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # one dict per log call, with "_step"
    summary: dict = field(default_factory=dict)
    exit_code: int | None = None


def find_wandb_file(path: str | Path) -> Path:
    """The .wandb file of a run: `path` itself, inside an offline-run dir, or the newest run in
    a `WANDB_DIR` (`<dir>/wandb/offline-run-*`)."""
    path = Path(path)
    if path.is_file():
        return path
    candidates = sorted(path.glob("run-*.wandb")) or sorted(
        path.glob("**/offline-run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"no W&B run file (run-*.wandb) under {path}")
    return candidates[-1]


def _item_key(item: Any) -> str:
    return item.key if item.key else "/".join(item.nested_key)


def read_offline_run(path: str | Path, *, wait_s: float = 30.0) -> OfflineRun:
    """Decode run identity, config, every history row and the summary of an offline run.

    wandb-core writes the log asynchronously: `run.finish()` can return before the records are
    on disk (seen with wandb 0.31 on a busy machine). A finished run ends with an exit record,
    so this waits up to `wait_s` seconds for one; after that it returns what is there
    (`exit_code` None: the run is still going or was killed).
    """
    wandb_file = find_wandb_file(path)
    deadline = time.monotonic() + wait_s
    while True:
        run = _decode(wandb_file)
        if run.exit_code is not None or time.monotonic() >= deadline:
            return run
        time.sleep(0.05)


def _decode(wandb_file: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2

    run = OfflineRun(path=wandb_file)
    for payload in iter_wandb_payloads(wandb_file.read_bytes()):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        _apply_record(run, record)
    return run


def _apply_record(run: OfflineRun, record: Any) -> None:
    kind = record.WhichOneof("record_type")
    if kind == "run":
        run.run_id, run.project = record.run.run_id, record.run.project
        run.group, run.job_type = record.run.run_group, record.run.job_type
        run.tags = list(record.run.tags)
        _update_items(run.config, record.run.config.update)
    elif kind == "config":
        _update_items(run.config, record.config.update)
    elif kind == "history":
        row = {_item_key(i): json.loads(i.value_json) for i in record.history.item}
        if record.history.HasField("step"):
            row.setdefault("_step", record.history.step.num)
        run.history.append(row)
    elif kind == "summary":
        _update_items(run.summary, record.summary.update)
    elif kind == "exit":
        run.exit_code = record.exit.exit_code


def _update_items(target: dict, items: Any) -> None:
    for item in items:
        key = _item_key(item)
        if key != "_wandb":  # W&B's own bookkeeping
            target[key] = json.loads(item.value_json)
