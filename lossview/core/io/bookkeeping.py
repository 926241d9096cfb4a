"""What a checkpoint dict holds beside its weights: positions, bookkeeping, metrics, data.

Training scripts save more than the weights. nanoGPT's ``train.py``::

    {"model": ..., "optimizer": ..., "model_args": {...}, "iter_num": 2000,
     "best_val_loss": tensor(1.47), "config": {...}}

timm's ``CheckpointSaver``::

    {"epoch": 7, "arch": "resnet18", "state_dict": ..., "optimizer": ..., "version": 2,
     "args": Namespace(...), "metric": 71.3}

Positions (``iter_num``, ``global_step``, ``epoch``...) place the snapshot; bookkeeping
(``version``, ``arch``, ``args``, ``config``, ``model_args``, ``seed``...) and every string
or flag is metadata (``run.spec["checkpoint_meta"]``); only the numbers left are metric
series. Also here: telling a saved dataset (``{"x": (60000, 1), "y": (60000,)}``) from a
state_dict, so ``data.pt`` beside the checkpoints is not opened as a model.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping
from typing import Any

#: Keys that hold the step of a checkpoint dict, most specific first.
STEP_KEYS = ("global_step", "step", "iteration", "iter", "iter_num", "num_updates", "steps")
EPOCH_KEYS = ("epoch", "epochs")
#: Other counters: where training was, never a metric (kept in ``meta["positions"]``).
OTHER_POSITIONS = ("batch_idx", "n_iter", "it", "total_steps", "cur_iter", "current_epoch",
                   "num_steps", "samples_seen", "tokens_seen", "num_tokens", "train_step",
                   "update", "updates", "best_epoch", "best_step", "best_iter")
POSITION_KEYS = STEP_KEYS + EPOCH_KEYS + OTHER_POSITIONS
#: How the checkpoint was made, not what training measured.
BOOKKEEPING_KEYS = ("version", "arch", "args", "config", "model_args", "seed", "cfg", "hparams",
                    "hyper_parameters", "hyperparameters", "hparams_name", "model_config",
                    "train_config", "training_args", "model_name", "model_type",
                    "settings", "world_size", "rank", "local_rank", "batch_size",
                    "pytorch-lightning_version", "torch_version", "git_hash", "date")

#: A saved dataset's tensor names (``x``, ``y_train``, ``images``, ``labels``...).
_DATA_NAME = re.compile(
    r"^(?:(?:x|y|data|targets?|labels?|inputs?|images?|features?|samples?|tokens|input_ids"
    r"|attention_mask)(?:[_-]?(?:train|test|val|valid))?"
    r"|(?:train|test|val|valid)[_-]?(?:x|y|data|labels?|targets?|inputs?|images?))$", re.I)
#: Fewest rows for tensors to count as a dataset (a toy problem's 2-D point ``x`` is weights).
DATA_ROWS = 100


def plain(v: Any, depth: int = 0) -> Any:
    """``v`` as JSON-able data (numbers, strings, lists, dicts; a Namespace as its dict, a
    one-element tensor as its number), or None where it is neither small nor plain."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if hasattr(v, "numel") and hasattr(v, "dtype"):
        return plain(v.reshape(-1)[0].item()) if v.numel() == 1 else None
    if depth >= 3:
        return None
    if isinstance(v, argparse.Namespace):
        v = vars(v)
    if isinstance(v, Mapping):
        items = list(v.items())[:300]
        return {str(k): plain(x, depth + 1) for k, x in items}
    if isinstance(v, (list, tuple)) and len(v) <= 100:
        return [plain(x, depth + 1) for x in v]
    return None


def is_bookkeeping(key: str, value: Any) -> bool:
    """True for a key that describes the run rather than measures it: a known bookkeeping
    name, or any string or flag."""
    return key in BOOKKEEPING_KEYS or isinstance(value, (str, bool))


def bookkeeping(obj: Mapping, skip: str | None) -> dict[str, Any]:
    """Plain metadata of a checkpoint dict: bookkeeping keys, strings and flags."""
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str) or k == skip or k in POSITION_KEYS or not is_bookkeeping(k, v):
            continue
        p = plain(v)
        if p is not None:
            out[k] = p
    return out


def metric_name(key: str, obj: Mapping) -> str:
    """The series name of a scalar saved beside the weights: timm's ``metric`` is the eval
    metric its ``args.eval_metric`` names (``top1``, ``loss``), on held-out data:
    ``val_top1``, ``val_loss``."""
    if key == "metric":
        args = obj.get("args")
        em = getattr(args, "eval_metric", None) if args is not None else None
        if isinstance(args, Mapping):
            em = args.get("eval_metric")
        if isinstance(em, str) and re.fullmatch(r"[A-Za-z0-9_]+", em):
            return f"val_{em}"
    return key


def _parameter_like(name: str) -> bool:
    return "." in name or bool(re.search(r"(weight|bias|kernel|embed|gamma|beta)", name, re.I))


def dataset_like(info: Mapping[str, tuple[tuple[int, ...], str]]) -> str | None:
    """A short description (``x [60000, 1], y [60000]``) when a bare mapping of tensors is a
    saved dataset, not a state_dict: every name is a data name (``x``, ``labels``...), none
    parameter-like, and all tensors share a first dimension of at least ``DATA_ROWS``."""
    if not info or any(_parameter_like(n) for n in info):
        return None
    if not all(_DATA_NAME.match(n) for n in info):
        return None
    rows = {shape[0] if shape else 0 for shape, _ in info.values()}
    if len(rows) != 1 or min(rows) < DATA_ROWS:
        return None
    shown = list(info.items())[:3]
    return ", ".join(f"{n} {list(s)}" for n, (s, _) in shown) + (" ..." if len(info) > 3 else "")
