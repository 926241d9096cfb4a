"""Detection and opening of checkpoint folders written by other tools.

Formats (names as in ``lossview analyze --json``):

``hf-trainer``   a folder with ``checkpoint-N/`` sub-folders (or one such folder)
``hf-pretrained`` per-step ``save_pretrained`` folders (sharded or not; ``hf_layouts``)
``accelerate``   accelerate ``save_state`` folders (``checkpoints/checkpoint_i/``)
``lightning``    ``.ckpt`` files in the folder or a few levels down (``lightning_logs/version_0/...``)
``torch``        ``.pt``/``.pth``/``.bin``/``.tar`` files (or unknown extensions whose bytes
                 are a ``torch.save`` zip or pickle)
``safetensors``  ``.safetensors`` files
``npz``          ``.npz`` files
``keras``        Keras 3 ``.weights.h5`` files and ``.keras`` archives (``kerasfiles``)

Order of detection: ``checkpoint-N/`` folders and the other Hugging Face layouts; then
checkpoint-shaped files win (:mod:`lossview.core.io.locate`): the folder's own series of
numbered files, else a sub-folder's (its files, ``checkpoints/`` one level down, ``.ckpt``
files deeper down), else the folder's own lone file, else the one sub-folder with any;
several runs in sub-folders are refused with one line listing them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from lossview.core.errors import LossviewError, NoCheckpointsError
from lossview.core.io.arrays import ArrayFileReader, scan_array_files
from lossview.core.io.filescan import (
    assemble_or_explain,
    is_non_weight_file,
    kind_of,
    summarize_ignored,
    visible_files,
)
from lossview.core.run import Run

#: Preference when a folder holds as many files of two kinds.
_PRIORITY = ("safetensors", "torch", "lightning", "npz", "keras")
FORMATS = ("torch", "lightning", "hf-trainer", "safetensors", "npz", "keras")
_LOOKED_FOR = (".safetensors, .npz, .pt/.pth/.bin/.tar, .ckpt, .weights.h5/.keras files or "
               "checkpoint-N/ folders")


def _kinds(files: list[Path]) -> dict[Path, str | None]:
    def kind(f: Path) -> str | None:
        if is_non_weight_file(f):
            return None
        return "lightning" if f.suffix.lower() == ".ckpt" else kind_of(f)

    return {f: kind(f) for f in files}


def _majority(kinds: dict[Path, str | None]) -> str | None:
    counts = Counter(k for k in kinds.values() if k is not None)
    if not counts:
        return None
    return max(counts, key=lambda k: (counts[k], -_PRIORITY.index(k)))


def checkpoint_folder(path: Path) -> tuple[Path, dict[Path, str | None]]:
    """The folder whose files are the checkpoints: ``path``, or the sub-folder whose series of
    checkpoints wins over ``path``'s own files (see :mod:`lossview.core.io.locate`)."""
    from lossview.core.io.locate import choose

    c = choose(path)
    if c is None or not c.kinds:
        return path, _kinds(visible_files(path))
    return c.folder, c.kinds


def detect(path: Path) -> str:
    """The format name of ``path``, or a LossviewError saying why it cannot be read."""
    from lossview.core.io.hf import hf_format

    path = Path(path)
    if path.is_file():
        if is_non_weight_file(path):
            raise LossviewError(f"{path.name} holds optimizer, scheduler or RNG state or "
                                f"training arguments, not weights")
        kind = kind_of(path)
        if kind is None:
            raise NoCheckpointsError(f"{path} is not a checkpoint file lossview can read "
                                     f"(looked for {_LOOKED_FOR})")
        return "lightning" if path.suffix.lower() == ".ckpt" else kind
    if not path.is_dir():
        raise LossviewError(f"{path} is neither a file nor a folder")
    try:
        empty = not any(path.iterdir())
    except OSError as e:
        raise LossviewError(f"cannot list {path}: {e.strerror or e}") from None
    if empty:
        raise NoCheckpointsError(f"{path} is empty: no checkpoints to open")
    if (hf := hf_format(path)) is not None:  # checkpoint-N/, save_pretrained, save_state
        return hf
    from lossview.core.io.locate import choose

    c = choose(path)  # a series of checkpoints wins over a lone data.pt; several runs: refused
    if c is None:
        raise NoCheckpointsError(f"no checkpoints in {path} (looked for {_LOOKED_FOR})")
    return c.fmt


def _run_below(path: Path, fmt: str) -> Path | None:
    """The sub-folder detection chose for a Hugging Face or Lightning run (None: ``path``)."""
    if fmt not in ("hf-trainer", "lightning") or not path.is_dir():
        return None
    from lossview.core.io.hf import hf_format
    from lossview.core.io.locate import choose

    if fmt == "hf-trainer" and hf_format(path) is not None:
        return None
    c = choose(path)
    return c.folder if c is not None and c.fmt == fmt and c.folder != path else None


def open_foreign(path: Path, fmt: str) -> Run:
    """Open ``path`` as format ``fmt`` (one of :data:`FORMATS`)."""
    path = Path(path)
    sub = _run_below(path, fmt)  # project/run_1/checkpoint-N/, project/lightning_logs/...
    if fmt in ("hf-trainer", "hf-pretrained", "accelerate"):
        from lossview.core.io.hf import open_hf

        return open_hf(sub or path, fmt)
    if fmt == "lightning":
        from lossview.core.io.lightning import open_lightning

        return open_lightning(path, within=sub)
    if fmt == "keras":
        from lossview.core.io.kerasfiles import open_keras

        return open_keras(path)
    if fmt not in FORMATS:
        raise LossviewError(f"unknown checkpoint format {fmt!r}")
    warnings: list[str] = []
    table_metrics: dict = {}
    spec: dict = {"source": fmt}
    if path.is_file():
        files = [path]
    else:
        from lossview.core.io.metricfiles import folder_metrics

        folder, kinds = checkpoint_folder(path)
        files = [f for f, k in kinds.items() if k == fmt]
        if folder != path:  # a series in checkpoints/ won over the folder's own data.pt
            over = [f for f, k in _kinds(visible_files(path)).items() if k is not None]
            if over:
                warnings.append(summarize_ignored(
                    over, f"beside {folder.relative_to(path)}/, whose files are the checkpoints"))
        not_weights = [f for f in kinds if is_non_weight_file(f)]
        # a loss table the user's loop wrote beside the checkpoints (or one level up, where
        # the checkpoints sit in their own sub-folder of the run)
        up = list(visible_files(folder.parent)) if folder != path or folder.name in (
            "checkpoints", "ckpt", "ckpts", "weights") else []
        table_metrics, used, w = folder_metrics(list(kinds) + up)
        warnings += w
        if used:
            spec["metrics_files"] = [str(f) for f in used]
            spec["metric_sources"] = {", ".join(f.name for f in used): list(table_metrics)}
        from lossview.core.io.locate import CHECKPOINT_DIRS
        from lossview.core.io.tensorboard import add_event_metrics  # SummaryWriter's runs/

        events = folder.parent if folder == path and folder.name in CHECKPOINT_DIRS else path
        add_event_metrics(table_metrics, events, warnings, spec, near=folder)
        stray = [f for f, k in kinds.items() if k != fmt and f not in not_weights and f not in used]
        for line in (summarize_ignored(stray, f"not {fmt} checkpoints"),
                     summarize_ignored(not_weights, "optimizer/scheduler/RNG state or training "
                                                    "arguments, not weights; never opened")):
            if line:
                warnings.append(line)
    if fmt == "torch":
        from lossview.core.io.optimizer import attach_from_snapshots
        from lossview.core.io.torchfiles import (
            TorchReader,
            checkpoint_info,
            scalar_series,
            scan_torch_files,
            snapshots_from_scan,
            unsafe_refusal,
        )

        unsafe: list[Path] = []
        found, w = scan_torch_files(files, unsafe)
        if not found and (why := unsafe_refusal(path, unsafe, len(files))) is not None:
            raise NoCheckpointsError(why)
        entries, w2 = snapshots_from_scan(found)
        warnings += w + w2
        if info := checkpoint_info(entries):
            spec["checkpoint_meta"] = info
        stored = scalar_series(entries)
        spec.setdefault("metric_sources", {})["stored in the checkpoints"] = [
            n for n in stored if n not in table_metrics]  # a table's column wins
        run = assemble_or_explain(path, fmt, entries, TorchReader("torch"),
                                  {**stored, **table_metrics}, spec, warnings)
        attach_from_snapshots(run)
        return run
    entries, w = scan_array_files(files, fmt)
    warnings += w
    return assemble_or_explain(path, fmt, entries, ArrayFileReader(fmt), table_metrics,
                               spec, warnings)

