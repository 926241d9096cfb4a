"""On-disk cache of run surfaces, keyed by run, plane, grid, data and evaluation mode.

Native runs keep their cache in the run's own ``cache/`` folder (safe to delete); other
folders, and runs shipped inside the package (the demo run), are never written to: their
surfaces go to ``$LOSSVIEW_CACHE_DIR`` or ``$XDG_CACHE_HOME/lossview/surfaces``
(``~/.cache/lossview/surfaces``). In-memory runs are not cached.
A cache file is one ``.npz`` written atomically; an unreadable one is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lossview.core.io.atomic import atomic_write
from lossview.core.run import Run

#: Bump when the evaluation changes what a cached surface would contain.
CACHE_VERSION = 2  # 2: finite-prefix planes, non-finite grid mask


def user_cache_dir() -> Path:
    base = os.environ.get("LOSSVIEW_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lossview")
    return Path(base) / "surfaces"


def _shipped(path: Path) -> bool:
    """True for runs inside the lossview package (the demo run): never written to."""
    import lossview

    pkg = Path(lossview.__file__).resolve().parent
    try:
        p = Path(path).resolve()
    except OSError:
        return False
    return any(p == root or root in p.parents for root in (pkg, (pkg / "resources").resolve()))


def cache_dir(run: Run) -> Path | None:
    if run.format == "memory":
        return None
    if run.format == "lossview" and not _shipped(run.path):
        return Path(run.path) / "cache"
    return user_cache_dir()


def run_identity(run: Run) -> dict[str, Any]:
    snaps = []
    for s in run.snapshots:
        # absolute: a run opened by a relative path (the CLI) has the same key as in the app
        src = str(Path(s.source).resolve())
        try:
            st = Path(s.source).stat()
            snaps.append([s.step, src, st.st_size, st.st_mtime_ns])
        except OSError:
            snaps.append([s.step, src])
    return {"path": str(Path(run.path).resolve()), "format": run.format, "snapshots": snaps}


def data_digest(batches: list) -> str:
    """Hash of the data the loss averages over (tensor bytes, shapes and dtypes)."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if hasattr(x, "detach"):
            a = x.detach().cpu().contiguous()
            h.update(f"{tuple(a.shape)}{a.dtype}".encode())
            h.update(a.numpy().tobytes() if str(a.dtype) != "torch.bfloat16" else a.float().numpy().tobytes())
        elif isinstance(x, (tuple, list)):
            for v in x:
                feed(v)
        elif isinstance(x, dict):
            for k in sorted(x):
                h.update(str(k).encode())
                feed(x[k])
        else:
            h.update(repr(x).encode())

    feed(batches)
    return h.hexdigest()


def surface_key(run: Run, **parts: Any) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "run": run_identity(run), **parts},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cache_path(run: Run, key: str) -> Path | None:
    d = cache_dir(run)
    return None if d is None else d / f"surface-{key}.npz"


def load(path: Path | None) -> dict[str, np.ndarray] | None:
    if path is None or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception:  # noqa: BLE001 - a damaged cache file is simply recomputed
        return None


def save(path: Path | None, arrays: dict[str, Any]) -> bool:
    """Write ``arrays`` atomically; False (and nothing written) if the folder is read-only."""
    if path is None:
        return False
    try:
        atomic_write(path, lambda p: _savez(p, arrays))
        return True
    except OSError:
        return False


def _savez(p: Path, arrays: dict[str, Any]) -> None:
    with open(p, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
