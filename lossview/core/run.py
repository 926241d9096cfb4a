"""The Run: an ordered list of snapshots, metric series and what is known of how it was made.

A Run never holds all snapshots in memory. Parameters are read on demand through the
reader that found the run (safetensors files are memory-mapped), with a small LRU cache,
and analyses stream over :meth:`Run.iter_vectors`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

TensorDict = dict[str, np.ndarray]

#: What a snapshot's position counts: optimizer steps, or epochs (see :attr:`Run.step_unit`).
STEP_UNITS = ("step", "epoch")

#: Default :attr:`Run.metric_aliases`.
METRIC_ALIASES = {"lr": "learning_rate"}

#: Name suffixes of tensors that are state, not trainable weights (BatchNorm statistics).
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


def is_buffer_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in BUFFER_SUFFIXES


def is_float_dtype(dtype: str) -> bool:
    """``dtype`` as numpy, torch or safetensors spell it: float32, torch.bfloat16, F16..."""
    d = str(dtype).lower().replace("torch.", "")
    return d.startswith(("float", "bfloat", "f16", "f32", "f64", "bf16", "half", "double"))


@dataclass(frozen=True)
class Snapshot:
    """One saved state of the weights. ``source`` is the file it comes from."""

    step: int
    source: Path
    epoch: float | None = None
    #: Format-specific extras (e.g. the loss a torch checkpoint stored beside the weights).
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class MetricSeries:
    """A logged quantity: ``values[i]`` was logged at ``steps[i]`` (ascending steps)."""

    steps: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        self.steps = np.asarray(self.steps, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.steps)

    def at(self, step: int) -> float:
        """Value logged at ``step`` or the last one before it (NaN if none)."""
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        return float(self.values[i]) if i >= 0 else math.nan

    def to_json(self) -> dict[str, list]:
        vals = [v if math.isfinite(v) else None for v in self.values.tolist()]
        return {"steps": self.steps.tolist(), "values": vals}


class Reader(Protocol):
    """What a format reader gives the Run: tensors of one snapshot, on demand."""

    format: str

    def read(self, snapshot: Snapshot) -> TensorDict: ...

    # Optional: ``read_into(snapshot, shapes, offsets, out) -> bool`` fills the flat vector
    # ``out`` with the parameters named in ``shapes`` (at ``offsets``) straight from the
    # file, without building a TensorDict; False when it cannot (the Run then falls back
    # to :meth:`read`).


class Run:
    """An ordered list of snapshots with lazily loaded parameters.

    Parameters
    ----------
    path : the folder or file the run was opened from.
    format : ``"lossview"``, ``"torch"``, ``"lightning"``, ``"hf-trainer"``,
        ``"hf-pretrained"``, ``"accelerate"``, ``"safetensors"``, ``"npz"`` or ``"keras"``.
    snapshots : in ascending step order.
    reader : loads one snapshot's tensors.
    param_shapes : name -> shape of the floating-point trainable parameters, in the
        order they are concatenated into a weight vector.
    buffer_names : tensors kept apart from the weights (BatchNorm statistics, ints).
    metrics : name -> series, what the folder logged.
    spec : what is known of how the run was made (``run.json`` for native runs);
        ``spec["optimizer"]`` holds the optimizer's settings where known and
        ``spec["step_unit"]`` what the steps count (see :attr:`step_unit`).
    warnings : one line per file skipped or problem found while opening.
    """

    def __init__(
        self,
        path: Path,
        format: str,
        snapshots: Sequence[Snapshot],
        reader: Reader,
        param_shapes: Mapping[str, tuple[int, ...]],
        buffer_names: Iterable[str] = (),
        metrics: Mapping[str, MetricSeries] | None = None,
        spec: Mapping[str, Any] | None = None,
        warnings: Iterable[str] = (),
        cache_size: int = 4,
    ) -> None:
        self.path = Path(path)
        self.format = format
        self.snapshots = list(snapshots)
        self.reader = reader
        self.param_shapes = dict(param_shapes)
        self.param_names = list(self.param_shapes)
        self.buffer_names = sorted(set(buffer_names))
        self.metrics = dict(metrics or {})
        self.spec = dict(spec or {})
        self.warnings = list(warnings)
        #: Names :meth:`metric` also tries for a name: ``"lr"`` finds a schedule logged as
        #: ``learning_rate`` (Hugging Face) or under a reader-set name (Lightning's ``lr-SGD``).
        self.metric_aliases: dict[str, str] = dict(METRIC_ALIASES)
        self._cache: OrderedDict[int, TensorDict] = OrderedDict()
        self._cache_size = cache_size
        sizes = [int(np.prod(s, dtype=np.int64)) for s in self.param_shapes.values()]
        self._offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        self._float_dtype: np.dtype | None = None

    # -- shape of the run -------------------------------------------------------
    def __len__(self) -> int:
        return len(self.snapshots)

    def __repr__(self) -> str:
        return (
            f"Run({str(self.path)!r}, format={self.format!r}, "
            f"n_checkpoints={len(self)}, n_params={self.n_params})"
        )

    @property
    def n_checkpoints(self) -> int:
        return len(self.snapshots)

    @property
    def n_params(self) -> int:
        return int(self._offsets[-1])

    @property
    def steps(self) -> np.ndarray:
        return np.array([s.step for s in self.snapshots], dtype=np.int64)

    @property
    def step_unit(self) -> str:
        """``"epoch"`` when the snapshots' positions (:attr:`steps`) count epochs, else
        ``"step"``: readers set ``spec["step_unit"]`` (an ``epoch`` key or an ``epoch_N`` /
        Keras ``weights.{epoch:02d}`` file name gave the positions); native runs say
        ``"step"`` unless their ``run.json`` names a unit."""
        unit = self.spec.get("step_unit")
        return unit if unit in STEP_UNITS else "step"

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.path.name)

    @property
    def live(self) -> bool:
        """Snapshots can still arrive: a run being trained in this process, until its
        training ends (:class:`~lossview.gui.training.live.LiveRun` answers from its
        training state). A run read from files is what its files hold: not live. Views ask
        this (a growing run: no surface yet, sharpness later, a fixed x frame)."""
        return False

    def index_of_step(self, step: int) -> int:
        """Index of the last snapshot at or before ``step`` (0 if ``step`` is before all)."""
        i = int(np.searchsorted(self.steps, step, side="right")) - 1
        return max(i, 0)

    def param_slices(self) -> dict[str, slice]:
        """Where each parameter lives in the flat weight vector."""
        return {
            n: slice(int(a), int(b))
            for n, a, b in zip(self.param_names, self._offsets[:-1], self._offsets[1:])
        }

    # -- loading ----------------------------------------------------------------
    def tensors(self, i: int) -> TensorDict:
        """All tensors of snapshot ``i`` (parameters and buffers), cached."""
        i = range(len(self))[i]
        hit = self._cache.get(i)
        if hit is not None:
            self._cache.move_to_end(i)
            return hit
        data = self.reader.read(self.snapshots[i])
        self._cache[i] = data
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return data

    def params(self, i: int) -> TensorDict:
        """The trainable floating-point parameters of snapshot ``i``, by name."""
        t = self.tensors(i)
        return {n: t[n] for n in self.param_names}

    def buffers(self, i: int) -> TensorDict:
        t = self.tensors(i)
        return {n: t[n] for n in self.buffer_names if n in t}

    @property
    def float_dtype(self) -> np.dtype:
        """float32 if the parameters of the first snapshot fit in float32 (float32, float16,
        bfloat16), else float64: the narrowest dtype holding the weights exactly."""
        if self._float_dtype is None:
            t = self.tensors(0) if len(self) else {}
            arrs = [np.asarray(t[n]) for n in self.param_names if n in t]
            small = bool(arrs) and all(a.dtype.itemsize <= 4 for a in arrs)
            self._float_dtype = np.dtype(np.float32 if small else np.float64)
        return self._float_dtype

    def vector(self, i: int, dtype: np.dtype | type | None = np.float64,
               out: np.ndarray | None = None, cache: bool = True) -> np.ndarray:
        """The parameters of snapshot ``i`` concatenated into one flat vector.

        ``dtype=None`` gives :attr:`float_dtype`. ``out`` (a flat array of ``n_params``
        entries) is filled and returned instead of a new array; its dtype wins. Readers
        that can (native runs) copy the bytes straight from the file into the vector,
        bypassing the snapshot cache. ``cache=False``: a snapshot not in the cache is
        decoded, copied and dropped, not kept (a streaming pass then holds no decoded
        snapshots beyond the one being copied).
        """
        i = range(len(self))[i]
        if out is None:
            out = np.empty(self.n_params, dtype=self.float_dtype if dtype is None else dtype)
        elif out.shape != (self.n_params,):
            raise ValueError(f"out has shape {out.shape}, expected ({self.n_params},)")
        read_into = getattr(self.reader, "read_into", None)
        if (read_into is not None and i not in self._cache
                and read_into(self.snapshots[i], self.param_shapes, self._offsets, out)):
            return out
        t = self.tensors(i) if cache or i in self._cache else self.reader.read(self.snapshots[i])
        for n, a, b in zip(self.param_names, self._offsets[:-1], self._offsets[1:]):
            out[a:b] = np.asarray(t[n]).reshape(-1)  # cast while copying: one pass
        return out

    def iter_vectors(
        self, indices: Iterable[int] | None = None, dtype: np.dtype | type | None = np.float64
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stream ``(index, flat vector)`` pairs without keeping earlier ones alive."""
        for i in range(len(self)) if indices is None else indices:
            yield i, self.vector(i, dtype=dtype)

    def metric(self, *names: str) -> MetricSeries | None:
        """The first of ``names`` that the run logged (or logged under the name's alias in
        :attr:`metric_aliases`), else None."""
        for n in names:
            for key in (n, self.metric_aliases.get(n)):
                s = self.metrics.get(key) if key is not None else None
                if s is not None and len(s):
                    return s
        return None
