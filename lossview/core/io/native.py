"""lossview's own run folder: reader and crash-safe writer (format in docs/format.md).

::

    myrun/
      run.json          format version, name, created, problem/model/data spec, optimizer, ...
      metrics.jsonl     one JSON object per logged step: {"step": 10, "loss": ..., ...}
      checkpoints/      step_000000010.safetensors ... (step and epoch also in the metadata)
      cache/            derived results, safe to delete
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from lossview._version import __version__
from lossview.core.errors import LossviewError
from lossview.core.io.atomic import atomic_write, atomic_write_json
from lossview.core.io.common import assemble_run
from lossview.core.run import MetricSeries, Run, Snapshot, TensorDict

FORMAT_NAME = "lossview-run"
FORMAT_VERSION = 1
CHECKPOINT_DIR = "checkpoints"


def is_native_run(path: Path) -> bool:
    p = Path(path) / "run.json"
    if not p.is_file():
        return False
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("format") == FORMAT_NAME
    except (OSError, ValueError, AttributeError):
        return False


def checkpoint_name(step: int) -> str:
    return f"step_{step:09d}.safetensors"


# -- reading --------------------------------------------------------------------------
def read_metrics_jsonl(path: Path) -> tuple[dict[str, MetricSeries], list[str]]:
    """Series per key of a metrics.jsonl; a torn last line (killed writer) is ignored."""
    cols: dict[str, tuple[list[int], list[float]]] = {}
    warnings: list[str] = []
    if not path.is_file():
        return {}, warnings
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            step = int(rec["step"])
        except (ValueError, KeyError, TypeError):
            if lineno < len(lines):
                warnings.append(f"{path.name}: line {lineno} is not a metrics record; skipped")
            continue
        for k, v in rec.items():
            if k == "step" or isinstance(v, (str, bool, list, dict)):
                continue
            s, vals = cols.setdefault(k, ([], []))
            s.append(step)
            vals.append(math.nan if v is None else float(v))
    out = {}
    for k, (s, v) in cols.items():
        order = np.argsort(np.asarray(s), kind="stable")
        out[k] = MetricSeries(np.asarray(s)[order], np.asarray(v)[order])
    return out, warnings


def safetensors_info(path: Path) -> tuple[dict[str, tuple[tuple[int, ...], str]], dict[str, str]]:
    """Names, shapes and dtypes of a .safetensors file plus its metadata (header only)."""
    with safe_open(str(path), framework="np") as f:
        info = {}
        for k in f.keys():  # noqa: SIM118 (safe_open is not iterable)
            sl = f.get_slice(k)
            info[k] = (tuple(sl.get_shape()), str(sl.get_dtype()))
        return info, dict(f.metadata() or {})


def read_safetensors(path: Path) -> TensorDict:
    """All tensors of a .safetensors file as numpy arrays (bfloat16 widened to float32)."""
    try:
        with safe_open(str(path), framework="np") as f:
            out = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        # once ml_dtypes is imported (keras, jax) numpy has a bfloat16 and safetensors
        # returns it: widen it as the torch route does (exact)
        return {k: v.astype(np.float32) if v.dtype.name == "bfloat16" else v for k, v in out.items()}
    except TypeError:  # numpy has no bfloat16: go through torch
        from safetensors.torch import load_file

        return {k: v.float().numpy() if v.is_floating_point() else v.numpy()
                for k, v in load_file(str(path)).items()}


#: safetensors dtype codes that numpy reads as they are (bfloat16 goes through torch).
_ST_DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}


def read_params_into(path: Path, shapes: Mapping[str, tuple[int, ...]], offsets: np.ndarray,
                     out: np.ndarray) -> bool:
    """Copy the tensors ``shapes`` of a .safetensors file into the flat vector ``out`` (the
    k-th at ``offsets[k]:offsets[k+1]``), reading only their bytes, with no intermediate
    array when the file's dtype is ``out``'s. False (``out`` partly written) if the file is
    not plain safetensors with those shapes in float16/32/64: the caller then reads it the
    general way, which names the problem.

    The format is an 8-byte little-endian header length, a JSON header giving each
    tensor's dtype, shape and byte range in the data section, then the data section.
    """
    try:
        with open(path, "rb", buffering=0) as fh:
            head = fh.read(8)
            if len(head) != 8:
                return False
            n = struct.unpack("<Q", head)[0]
            if n > 100 * 2**20:
                return False
            hdr = json.loads(fh.read(n))
            start = 8 + n
            for k, (name, shape) in enumerate(shapes.items()):
                info = hdr[name]
                dt = _ST_DTYPES.get(info["dtype"])
                if dt is None or tuple(info["shape"]) != tuple(shape):
                    return False
                a, b = int(offsets[k]), int(offsets[k + 1])
                lo, hi = (int(x) for x in info["data_offsets"])
                if hi - lo != (b - a) * dt.itemsize:
                    return False
                dest = out[a:b]
                buf = dest if dt == out.dtype else np.empty(b - a, dtype=dt)
                fh.seek(start + lo)
                if fh.readinto(memoryview(buf).cast("B")) != buf.nbytes:
                    return False
                if buf is not dest:
                    dest[:] = buf
            return True
    except (OSError, ValueError, KeyError, TypeError, AttributeError, struct.error):
        return False


class NativeReader:
    format = "lossview"

    def read(self, snapshot: Snapshot) -> TensorDict:
        return read_safetensors(snapshot.source)

    def read_into(self, snapshot: Snapshot, shapes: Mapping[str, tuple[int, ...]],
                  offsets: np.ndarray, out: np.ndarray) -> bool:
        return read_params_into(snapshot.source, shapes, offsets, out)


def open_native(path: Path) -> Run:
    path = Path(path)
    try:
        spec = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise LossviewError(f"cannot read {path / 'run.json'}: {e}") from None
    version = int(spec.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise LossviewError(
            f"{path} was written by a newer lossview (run format {version}); please upgrade"
        )
    metrics, warnings = read_metrics_jsonl(path / "metrics.jsonl")
    entries = []
    buffers: set[str] = set()
    ckdir = path / CHECKPOINT_DIR
    files = sorted(ckdir.glob("*.safetensors")) if ckdir.is_dir() else []
    for f in files:
        try:
            info, meta = safetensors_info(f)
            step = int(meta["step"])
        except Exception as e:  # noqa: BLE001 - any unreadable file is skipped and named
            warnings.append(f"skipped {f.name}: not a readable snapshot ({_one_line(e)})")
            continue
        epoch = float(meta["epoch"]) if meta.get("epoch") not in (None, "", "None") else None
        buffers.update(json.loads(meta.get("buffers", "[]")))
        entries.append((Snapshot(step=step, source=f, epoch=epoch), info))
    if not entries:
        from lossview.core.errors import NoCheckpointsError

        raise NoCheckpointsError(f"{path} is a lossview run with no complete snapshot yet")
    return assemble_run(path, "lossview", entries, NativeReader(), metrics, spec, warnings,
                        buffer_names=sorted(buffers))


def _one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


# -- writing --------------------------------------------------------------------------
def _to_numpy(t: Any) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.contiguous().numpy()
    return np.ascontiguousarray(np.asarray(t))


class RunWriter:
    """Writes a native run folder so that a process killed at any moment leaves it readable.

    ``run.json`` and every checkpoint are written to a temporary file and renamed into
    place; each metrics record is one line, appended and flushed.

    Parameters
    ----------
    path : the run folder (created).
    spec : what to record in run.json (problem, model, data, optimizer, schedule, seed...).
    overwrite : replace an existing run at ``path`` instead of refusing.
    sync : fsync the first ``run.json`` before returning (the default). ``False`` leaves
        that to the caller (:meth:`sync_spec`; the Recorder's writer process does it), so
        the training thread does not wait for the disk: the file is complete and in place
        either way, only not yet durable against a power loss.
    """

    def __init__(self, path: Path | str, spec: Mapping[str, Any] | None = None,
                 overwrite: bool = False, sync: bool = True) -> None:
        self.path = Path(path)
        if self.path.exists() and any(self.path.iterdir()):
            if not overwrite:
                raise LossviewError(f"{self.path} already exists and is not empty")
            self._clear()
        (self.path / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        self.spec: dict[str, Any] = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.path.name,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "lossview_version": __version__,
            "status": "running",
        }
        self.spec.update(spec or {})
        atomic_write_json(self.path / "run.json", self.spec, sync=sync)
        self.spec_synced = sync  # run.json durable (else: sync_spec() is the caller's)
        # kept open for the writer's life: closed by close()/release()
        self._metrics = open(self.path / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        self.last_snapshot_step: int | None = None

    def sync_spec(self) -> None:
        """fsync ``run.json`` (after ``RunWriter(..., sync=False)``)."""
        fd = os.open(self.path / "run.json", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.spec_synced = True

    def release(self) -> None:
        """Close ``metrics.jsonl`` without marking the run: the Recorder's writer process
        goes on appending to it, and :meth:`close` still marks the run."""
        if not self._metrics.closed:
            self._metrics.close()

    def _clear(self) -> None:
        import shutil

        if not (self.path / "run.json").is_file():
            raise LossviewError(f"refusing to overwrite {self.path}: it is not a lossview run")
        shutil.rmtree(self.path)

    def update_spec(self, **fields: Any) -> None:
        self.spec.update(fields)
        atomic_write_json(self.path / "run.json", self.spec)

    def log(self, step: int, **metrics: Any) -> None:
        self.log_many([(step, metrics)])

    def log_many(self, records: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        """Append ``(step, metrics)`` records in one write (a write per record, each a
        system call releasing the GIL, slowed a training thread sharing the process)."""
        lines = []
        for step, metrics in records:
            rec: dict[str, Any] = {"step": int(step)}
            for k, v in metrics.items():
                if v is None:
                    continue
                if hasattr(v, "item"):
                    v = v.item()
                rec[k] = v
            # allow_nan: NaN/Infinity tokens are read back by Python's json; divergence is data.
            lines.append(json.dumps(rec))
        if lines:
            self._metrics.write("\n".join(lines) + "\n")
            self._metrics.flush()

    def snapshot(self, step: int, params: Mapping[str, Any], buffers: Mapping[str, Any] | None = None,
                 epoch: float | None = None) -> Path:
        """Write one checkpoint atomically; ``params`` are the trainable weights."""
        tensors = {k: _to_numpy(v) for k, v in params.items()}
        buf = {k: _to_numpy(v) for k, v in (buffers or {}).items()}
        tensors.update(buf)
        meta = {"step": str(int(step)), "epoch": "" if epoch is None else repr(float(epoch)),
                "buffers": json.dumps(sorted(buf)), "format": FORMAT_NAME}
        out = self.path / CHECKPOINT_DIR / checkpoint_name(int(step))
        atomic_write(out, lambda p: save_file(tensors, str(p), metadata=meta))
        self.last_snapshot_step = int(step)
        return out

    def close(self, status: str = "finished", **fields: Any) -> None:
        if not self._metrics.closed:
            self._metrics.flush()
            os.fsync(self._metrics.fileno())
            self._metrics.close()
        self.update_spec(status=status, **fields)

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._metrics.closed:
            self.close("failed" if exc_type else "finished")
