"""Where each parameter's bytes lie in a snapshot's files, for reads of any part of them.

A safetensors file is an 8-byte little-endian header length, a JSON header giving each
tensor's dtype, shape and byte range, then the raw data. A torch file in the zip format
(``torch.save`` since PyTorch 1.6, Lightning and Hugging Face ``.bin`` files) stores each
storage as an uncompressed zip member: ``torch.load(map_location="meta")`` unpickles the
structure without reading any data and gives each storage's offset in the file
(``_checkpoint_offset``). With those offsets an analysis can read a column block of every
snapshot straight from the files (only its bytes), instead of loading each snapshot whole.

:func:`snapshot_ranges` answers None for anything it cannot map exactly (npz, Keras, legacy
torch files, non-contiguous tensors, other dtypes, shapes that differ): the caller then
reads the snapshot the general way.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import warnings as pywarnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lossview.core.run import Run, Snapshot

#: File dtypes read by range; ``bf16`` is read as 16-bit words and widened exactly.
_ST_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "BF16": "bf16"}
_TORCH_DTYPES = {"torch.float16": "<f2", "torch.float32": "<f4", "torch.float64": "<f8",
                 "torch.bfloat16": "bf16"}


@dataclass(frozen=True)
class Span:
    """One tensor's data in a file: ``path``, byte ``offset``, ``dtype`` (numpy spelling, or
    ``"bf16"``) and element count ``size`` (row-major, contiguous)."""

    path: str
    offset: int
    dtype: str
    size: int

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bf16" else np.dtype(self.dtype).itemsize


def safetensors_spans(path: Path) -> dict[str, tuple[Span, tuple[int, ...]]]:
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        if n > 100 * 2**20:
            raise ValueError("header too large")
        hdr = json.loads(fh.read(n))
    out = {}
    for name, info in hdr.items():
        if name == "__metadata__" or info.get("dtype") not in _ST_DTYPES:
            continue
        shape = tuple(int(s) for s in info["shape"])
        lo, hi = (int(x) for x in info["data_offsets"])
        sp = Span(str(path), 8 + n + lo, _ST_DTYPES[info["dtype"]], int(np.prod(shape, dtype=np.int64)))
        if hi - lo != sp.size * sp.itemsize:
            continue
        out[name] = (sp, shape)
    return out


def _zip_layout(path: Path) -> tuple | None:
    """What fixes where a torch zip file's storages lie: every member's name, offset, size
    and compression, each member's local header lengths, and the pickle's bytes. Two files
    with the same layout hold the same tensors at the same offsets (``torch.save`` of the
    same state_dict structure at each snapshot: only the storages' bytes differ)."""
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        pkl = [i for i in infos if i.filename.endswith("data.pkl")]
        if len(pkl) != 1:
            return None
        fd = os.open(path, os.O_RDONLY)
        try:
            local = tuple(os.pread(fd, 30, i.header_offset)[26:30] for i in infos)
        finally:
            os.close(fd)
        # members sit under a folder named after the file ("epoch_3/data.pkl"): compared
        # without it (the offsets, which the name's length moves, are compared as they are)
        return (tuple((i.filename.partition("/")[2], i.header_offset, i.file_size, i.compress_size,
                       i.compress_type) for i in infos), local, z.read(pkl[0]))


def torch_spans(path: Path, key: str | None, memo: dict | None = None
                ) -> dict[str, tuple[Span, tuple[int, ...]]]:
    """The spans of a torch zip file's tensors (``obj[key]`` when ``key``). ``memo``: a dict
    kept across the files of one run; a file laid out exactly like one already parsed
    (:func:`_zip_layout`) is not unpickled again (7 ms a file, most of a torch run's
    header reading)."""
    sig = None
    if memo is not None:
        sig = (key, _zip_layout(path))
        hit = memo.get(sig) if sig[1] is not None else None
        if hit is not None:
            return {n: (Span(str(path), sp.offset, sp.dtype, sp.size), shape)
                    for n, (sp, shape) in hit.items()}
    import torch

    from lossview.core.io.torchfiles import SAFE_GLOBALS

    with torch.serialization.safe_globals(list(SAFE_GLOBALS)), pywarnings.catch_warnings():
        pywarnings.simplefilter("ignore", UserWarning)
        obj = torch.load(str(path), map_location="meta", weights_only=True)
    sd = obj if key is None else obj[key]
    with zipfile.ZipFile(path) as z:  # data stored big-endian (saved on s390x): not by range
        order = [n for n in z.namelist() if n.endswith("/byteorder")]
        if order and z.read(order[0]).strip() != b"little":
            return {}
    out = {}
    for name, t in sd.items():
        if not isinstance(t, torch.Tensor) or str(t.dtype) not in _TORCH_DTYPES:
            continue
        base = getattr(t.untyped_storage(), "_checkpoint_offset", None)
        if base is None or not t.is_contiguous():
            continue
        sp = Span(str(path), int(base) + t.storage_offset() * t.element_size(),
                  _TORCH_DTYPES[str(t.dtype)], t.numel())
        out[str(name)] = (sp, tuple(int(s) for s in t.shape))
    if sig is not None and sig[1] is not None:
        memo[sig] = out
    return out


def _base_reader(run: Run):
    from lossview.core.io.normalise import RenamingReader

    r = run.reader
    while isinstance(r, RenamingReader):
        r = r.inner
    return r


def ranged_reader_kind(run: Run) -> bool:
    """Whether the run's reader reads files :func:`snapshot_ranges` can map (safetensors and
    torch files as they are, apart from renaming)."""
    from lossview.core.io.arrays import ArrayFileReader
    from lossview.core.io.hf import HFReader
    from lossview.core.io.native import NativeReader
    from lossview.core.io.torchfiles import TorchReader

    r = _base_reader(run)
    if isinstance(r, ArrayFileReader):
        return r.format != "npz"
    return isinstance(r, (NativeReader, HFReader, TorchReader))


def snapshot_ranges(run: Run, snapshot: Snapshot, memo: dict | None = None) -> list[Span] | None:
    """The :class:`Span` of each of ``run.param_names`` in ``snapshot``'s files, in order,
    or None where one cannot be mapped exactly (``memo``: see :func:`torch_spans`)."""
    files = snapshot.meta.get("files", [snapshot.source])
    inv = {v: k for k, v in (snapshot.meta.get("renamed") or {}).items()}
    found: dict[str, tuple[Span, tuple[int, ...]]] = {}
    try:
        for f in files:
            f = Path(f)
            if f.suffix.lower() == ".safetensors":
                found.update(safetensors_spans(f))
            elif f.suffix.lower() == ".npz":
                return None
            else:
                found.update(torch_spans(f, snapshot.meta.get("key"), memo))
    except Exception:  # noqa: BLE001 - anything odd: the general read names the problem
        return None
    spans = []
    for name, shape in run.param_shapes.items():
        hit = found.get(inv.get(name, name))
        if hit is None or hit[1] != tuple(shape):
            return None
        spans.append(hit[0])
    return spans


def run_ranges(run: Run) -> list[list[Span]] | None:
    """:func:`snapshot_ranges` of every snapshot, or None if any cannot be mapped."""
    if not ranged_reader_kind(run) or not run.snapshots:
        return None
    out = []
    memo: dict = {}
    for s in run.snapshots:
        sp = snapshot_ranges(run, s, memo)
        if sp is None:
            return None
        out.append(sp)
    return out


def read_span(fd: int, span: Span, first: int, count: int, out: np.ndarray,
              scratch: np.ndarray | None = None) -> None:
    """Elements ``first .. first + count`` of ``span`` into the flat array ``out`` (float32
    or float64), converting exactly: float16/bfloat16 widen, float32 into float64 widens.
    ``scratch``: a reusable uint8 buffer for conversions (grown as needed)."""
    item = span.itemsize
    nbytes = count * item
    direct = span.dtype != "bf16" and np.dtype(span.dtype) == out.dtype
    if direct:
        raw = out
    else:
        if scratch is None or scratch.nbytes < nbytes:
            scratch = np.empty(nbytes, dtype=np.uint8)
        raw = scratch[:nbytes]
    view = memoryview(raw).cast("B")
    pos, off = 0, span.offset + first * item
    while pos < nbytes:
        got = os.preadv(fd, [view[pos:nbytes]], off + pos)
        if got <= 0:
            raise OSError(f"short read from {span.path}")
        pos += got
    if direct:
        return
    if span.dtype == "bf16":
        words = raw.view("<u2")
        if out.dtype == np.float32:
            u = out.view(np.uint32)
            np.copyto(u, words, casting="unsafe")
            u <<= 16  # a bfloat16 is the high half of the float32 with the same value
        else:
            tmp = np.empty(count, dtype=np.uint32)
            np.copyto(tmp, words, casting="unsafe")
            tmp <<= 16
            np.copyto(out, tmp.view(np.float32))
    else:
        np.copyto(out, raw.view(span.dtype), casting="unsafe")


def _max_open_files() -> int:
    """Files a :class:`SpanReader` keeps open: half the process's soft limit, 128 to 4,096.
    A column block reads every snapshot's file in turn, so a run with more files than this
    reopens each file at every block (the old cap, 256, made a 1,000-file run open 60,000
    files: a third of its read time)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 4096
    return int(min(max(soft // 2, 128), 4096))


class SpanReader:
    """Reads parts of snapshots' parameters by byte range, holding each file open once."""

    def __init__(self, spans: list[list[Span]]):
        self.spans = spans
        self._fds: dict[str, int] = {}
        self._scratch = np.empty(0, dtype=np.uint8)
        self._max_fds = _max_open_files()

    def fd(self, path: str) -> int:
        fd = self._fds.get(path)
        if fd is None:
            if len(self._fds) >= self._max_fds:  # bounded number of open files
                self.close()
            fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def read(self, i: int, k: int, first: int, count: int, out: np.ndarray) -> None:
        """Elements ``first .. first + count`` of parameter ``k`` of snapshot ``i``."""
        sp = self.spans[i][k]
        need = count * sp.itemsize
        if self._scratch.nbytes < need and (sp.dtype == "bf16" or np.dtype(sp.dtype) != out.dtype):
            self._scratch = np.empty(need, dtype=np.uint8)
        try:
            read_span(self.fd(sp.path), sp, first, count, out, self._scratch)
        except OSError as e:  # a file changed or vanished since the run was opened
            from lossview.core.errors import LossviewError
            from lossview.core.io.filescan import one_line

            raise LossviewError(f"cannot read {Path(sp.path).name}: {one_line(e)}") from None

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()


def spans_fit_float32(spans: Mapping[int, list[Span]] | list[list[Span]]) -> bool:
    """True if every span's dtype widens exactly into float32 (the Run's float_dtype rule)."""
    it = spans.values() if isinstance(spans, Mapping) else spans
    return all(sp.itemsize <= 4 for row in it for sp in row)


def read_safetensors_into(snapshot: Snapshot, shapes: Mapping[str, tuple[int, ...]],
                          offsets: np.ndarray, out: np.ndarray) -> bool:
    """The ``read_into`` of readers of safetensors files (Hugging Face folders, plain
    safetensors runs): each tensor of ``shapes`` copied from its file's bytes into the flat
    vector ``out`` at ``offsets``, bfloat16 and float16 widened on the way, no tensor
    decoded whole. False (``out`` partly written) where the files are not all safetensors
    holding those shapes in float16/bfloat16/float32/float64."""
    files = [Path(f) for f in snapshot.meta.get("files", [snapshot.source])]
    if not files or any(f.suffix.lower() != ".safetensors" for f in files):
        return False
    try:
        found: dict[str, tuple[Span, tuple[int, ...]]] = {}
        for f in files:
            found.update(safetensors_spans(f))
        spans = []
        for name, shape in shapes.items():
            hit = found.get(name)
            if hit is None or hit[1] != tuple(shape):
                return False
            spans.append(hit[0])
        reader = SpanReader([spans])
        try:
            for k, sp in enumerate(spans):
                reader.read(0, k, 0, sp.size, out[int(offsets[k]):int(offsets[k + 1])])
        finally:
            reader.close()
        return True
    except (OSError, ValueError, KeyError, TypeError, struct.error):
        return False
