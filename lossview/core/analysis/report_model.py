"""The analysis report as a typed, immutable value: what the window reads.

:func:`lossview.core.analysis.report.analyze` returns a JSON-ready dict (its keys are the
contract of ``lossview analyze --json``: docs/analysis.md).
:meth:`RunReport.from_json` turns it into frozen dataclasses: the parts the window reads
have typed fields (``report.pca.coords``, ``report.answers.stability.verdict``), numbers
in lists become read-only numpy arrays (``None`` as NaN in float arrays), lists of texts
tuples, nested dicts read-only mappings. Keys a part does not type are kept as they came,
so :meth:`RunReport.to_json` gives back the dict it was made from (equal to it), whatever
keys a later report adds.

Nothing changes a report in place: :meth:`RunReport.with_sharpness` returns a new value
with the sharpness and core's answers and diagnosis recomputed from it.

Every part is also a read-only :class:`~collections.abc.Mapping` of its JSON keys (the
words of :mod:`lossview.core.analysis.verdicts` read answers by key). A part that the
report lacks, or has as ``null``, reads as an empty part (every field None), so views
write ``report.pca.coords`` without checking the part first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

_EMPTY: Mapping[str, Any] = {}


class FrozenDict(Mapping):
    """A read-only mapping (picklable, unlike ``MappingProxyType``)."""

    __slots__ = ("_d",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        self._d = dict(items or {})

    def __getitem__(self, key: str) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"FrozenDict({self._d!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and thaw(self) == thaw(other)

    __hash__ = None  # type: ignore[assignment]


def _numbers(items: list | tuple) -> np.ndarray | None:
    """``items`` (numbers and None, or equally long lists of them) as a read-only array;
    None where they are not numbers (texts, dicts, booleans, ragged rows)."""
    try:
        a = np.array(items)
    except (ValueError, TypeError):  # ragged rows
        return None
    if a.dtype.kind == "O":  # None among the numbers: NaN in a float array
        flat = a.reshape(-1)
        if not any(v is None for v in flat) or not all(
                v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                for v in flat):
            return None
        a = np.array(items, dtype=np.float64)
    elif a.dtype.kind not in "if":
        return None
    a.flags.writeable = False
    return a


def freeze(x: Any) -> Any:
    """A JSON value as an immutable one: dicts read-only mappings, lists of numbers
    read-only arrays, other lists tuples."""
    if isinstance(x, Section | FrozenDict | np.ndarray):
        return x
    if isinstance(x, Mapping):
        return FrozenDict({str(k): freeze(v) for k, v in x.items()})
    if isinstance(x, (list, tuple)):
        a = _numbers(x) if x else None
        return a if a is not None else tuple(freeze(v) for v in x)
    return x


def thaw(x: Any) -> Any:
    """:func:`freeze` undone: plain dicts, lists, numbers (NaN as None) and texts."""
    if isinstance(x, Section):
        return x.to_json()
    if isinstance(x, Mapping):
        return {k: thaw(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            return x.tolist()
        out = x.astype(object)
        out[~np.isfinite(x)] = None
        return out.tolist()
    if isinstance(x, (list, tuple)):
        return [thaw(v) for v in x]
    return x


#: A field's metadata: it holds a nested part (its default factory; an empty part where
#: the report has none) ...
PART = {"part": True}
#: ... or a list of texts, as a tuple.
TEXTS = {"texts": True}


@dataclass(frozen=True, eq=False, kw_only=True)
class Section(Mapping):
    """A part of the report: typed fields for the keys the window reads, the other keys
    kept as they came (``_rest``), and which keys the JSON had (``_keys``, in order) and
    which of them were null (``_nulls``), so that :meth:`to_json` gives the dict back."""

    _keys: tuple[str, ...] = field(default=(), repr=False)
    _rest: Mapping[str, Any] = field(default_factory=FrozenDict, repr=False)
    _nulls: frozenset[str] = field(default=frozenset(), repr=False)

    _typed: ClassVar[dict[str, Any]]

    @classmethod
    def typed_fields(cls) -> dict[str, Any]:
        t = cls.__dict__.get("_typed")
        if t is None:
            t = {f.name: f for f in fields(cls) if not f.name.startswith("_")}
            cls._typed = t
        return t

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Any:
        """The part of the JSON dict ``d`` (None: an empty part)."""
        if isinstance(d, cls):
            return d
        d = d or {}
        typed = cls.typed_fields()
        kw: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        nulls = set()
        for k, v in d.items():
            k = str(k)
            f = typed.get(k)
            part = f.default_factory if f and f.metadata.get("part") else None
            texts = bool(f and f.metadata.get("texts"))
            if f is None or (part and v is not None and not isinstance(v, Mapping)) or (
                    texts and v is not None and not isinstance(v, (list, tuple))):
                rest[k] = freeze(v)  # untyped, or not of its type: kept as it came
            elif part is not None:
                if v is None:
                    nulls.add(k)  # read as an empty part, written back as null
                else:
                    kw[k] = part.from_json(v)
            elif texts:
                kw[k] = None if v is None else tuple(v)
            else:
                kw[k] = freeze(v)
        return cls(_keys=tuple(str(k) for k in d), _rest=FrozenDict(rest),
                   _nulls=frozenset(nulls), **kw)

    def to_json(self) -> dict[str, Any]:
        """The JSON dict this part was made from."""
        out: dict[str, Any] = {}
        for k in self._keys:
            if k in self._rest:
                out[k] = thaw(self._rest[k])
            elif k in self._nulls:
                out[k] = None
            else:
                out[k] = thaw(getattr(self, k))
        return out

    # -- read-only mapping of the JSON keys ------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key in self._rest:
            return self._rest[key]
        if key in self._keys:
            return None if key in self._nulls else getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Section):
            other = other.to_json()
        return isinstance(other, Mapping) and self.to_json() == thaw(other)

    __hash__ = None  # type: ignore[assignment]


Array = np.ndarray  # read-only, as :func:`freeze` makes them


@dataclass(frozen=True, eq=False, kw_only=True)
class Answer(Section):
    """One of core's four answers (:mod:`lossview.core.analysis.answers`): the verdict, its
    sentence, and the numbers that decided it (by key)."""

    verdict: str | None = None
    sentence: str | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class Answers(Section):
    loss: Answer = field(default_factory=Answer, metadata=PART)
    weights: Answer = field(default_factory=Answer, metadata=PART)
    stability: Answer = field(default_factory=Answer, metadata=PART)
    exploration: Answer = field(default_factory=Answer, metadata=PART)


@dataclass(frozen=True, eq=False, kw_only=True)
class Plateau(Section):
    step: int | None = None  # where the loss levelled off
    metric: str | None = None
    reason: str | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class Divergence(Section):
    step: int | None = None  # where the run blew up
    diverged: bool | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class Distance(Section):
    from_init: Array | None = None  # per snapshot
    step_length: Array | None = None
    to_final: Array | None = None
    path_length: float | None = None
    net_displacement: float | None = None
    nonfinite_snapshots: Array | None = None
    reason: str | None = None  # why there are no distances (a preview: being computed)


@dataclass(frozen=True, eq=False, kw_only=True)
class Pca(Section):
    indices: Array | None = None  # the snapshot of each row of coords
    steps: Array | None = None
    explained_variance_ratio: Array | None = None
    random_walk_similarity: float | None = None
    random_walk: Mapping[str, Any] | None = None
    coords: Array | None = None  # PC1-PC2
    coords_k: Array | None = None  # the first few PCs
    # where the rows are an even subsample of a long run: how many snapshots it had
    of_snapshots: int | None = None
    reason: str | None = None

    @property
    def baseline_ratio(self) -> Array | None:
        """A random walk's explained-variance ratios at these snapshots."""
        return (self.random_walk or _EMPTY).get("baseline_ratio")


@dataclass(frozen=True, eq=False, kw_only=True)
class Diffusion(Section):
    lags: Array | None = None
    msd: Array | None = None
    exponent: float | None = None
    segment: str | None = None
    segment_start_step: int | None = None
    reason: str | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class Pairwise(Section):
    indices: Array | None = None
    steps: Array | None = None
    matrix: Array | None = None
    reason: str | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class Sharpness(Section):
    """The sharpness table (top Hessian eigenvalue per snapshot), measured with the model."""

    steps: Array | None = None
    sharpness: Array | None = None
    values: Array | None = None  # an older name of ``sharpness``
    lr: Any = None
    verdict: str | None = None
    reason: str | None = None

    @property
    def eigenvalues(self) -> Array | None:
        return self.sharpness if self.sharpness is not None else self.values


@dataclass(frozen=True, eq=False, kw_only=True)
class RunReport(Section):
    """The report of one run (see the module docstring); ``RunReport.of`` accepts a
    report dict, a RunReport or None."""

    format: str | None = None
    path: str | None = None
    name: str | None = None
    n_checkpoints: int | None = None
    steps: Array | None = None  # the step (or epoch) of each snapshot
    n_params: int | None = None
    buffers: tuple[str, ...] = field(default=(), metadata=TEXTS)
    warnings: tuple[str, ...] = field(default=(), metadata=TEXTS)
    metrics: Mapping[str, Any] | None = None
    step_unit: str | None = None  # "step" or "epoch"
    optimizer: Mapping[str, Any] | None = None
    loss_from_model: str | None = None  # the metric the model file's losses were logged as
    distance: Distance = field(default_factory=Distance, metadata=PART)
    divergence: Divergence = field(default_factory=Divergence, metadata=PART)
    plateau: Plateau = field(default_factory=Plateau, metadata=PART)
    pca: Pca = field(default_factory=Pca, metadata=PART)
    diffusion: Diffusion = field(default_factory=Diffusion, metadata=PART)
    stationarity: Mapping[str, Any] | None = None
    gradient: Mapping[str, Any] | None = None
    permutation: Mapping[str, Any] | None = None
    pairwise: Pairwise = field(default_factory=Pairwise, metadata=PART)
    sharpness: Sharpness = field(default_factory=Sharpness, metadata=PART)
    sharpness_reason: str | None = None
    answers: Answers = field(default_factory=Answers, metadata=PART)
    diagnosis: tuple[str, ...] = field(default=(), metadata=TEXTS)
    opened_as: str | None = None  # how the loader read the folder (the command line's)

    @classmethod
    def of(cls, report: RunReport | Mapping[str, Any] | None) -> RunReport | None:
        return None if report is None else cls.from_json(report)

    def with_sharpness(self, table: Mapping[str, Any] | None) -> RunReport:
        """A new report with ``table`` as its sharpness and core's answers and diagnosis
        recomputed with it (:func:`lossview.core.analysis.refresh.refresh_answers`, on a
        copy); this one is unchanged. Runs on the window's GUI thread: imports no torch."""
        from lossview.core.analysis.refresh import jsonable, refresh_answers

        d = self.to_json()  # a fresh dict: refresh_answers fills it, not this report
        d["sharpness"] = jsonable(table)
        refresh_answers(d)
        # only these keys changed: the other parts are shared with this report (frozen),
        # not read again (half the time on a 1,000-snapshot report)
        changed = ("sharpness", "answers", "diagnosis")
        new = RunReport.from_json({k: d[k] for k in changed if k in d})
        kept = {f: getattr(self, f) for f in self.typed_fields() if f not in changed}
        return RunReport(
            _keys=tuple(d),
            _rest=FrozenDict({**{k: v for k, v in self._rest.items() if k not in changed},
                              **new._rest}),
            _nulls=(self._nulls - set(changed)) | new._nulls,
            **kept, **{f: getattr(new, f) for f in changed})
