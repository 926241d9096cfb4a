"""Optimizer settings saved as plain data beside the weights: read, never executed.

``run.spec["optimizer"]`` has the keys lossview's own runs write in ``run.json``::

    {"name": "sgd" | "adam" | "adamw" | "rmsprop" | "adagrad" | ... | None,
     "lr": float | None, "momentum": float | None, "nesterov": bool | None,
     "betas": [b1, b2] | None, "eps": float | None, "weight_decay": float | None,
     "source": "which file and key it came from, in words"}

Where it comes from:

- an optimizer ``state_dict()`` (``{"state", "param_groups"}``) saved in a checkpoint dict
  under ``optimizer_state_dict`` (the PyTorch tutorial), ``optimizer`` (nanoGPT, timm),
  ``optimizer_states`` (Lightning, a list) or a similar key: the settings of the first
  param group; the optimizer's family from the keys the group and the state hold
  (:func:`infer_name`), since a state_dict does not name its class;
- Lightning's ``lr_schedulers[0]["_last_lr"]`` where no optimizer state was saved;
- a plain ``lr``/``learning_rate`` number saved beside the weights, timm's ``args``
  (``opt``, ``lr``...) and an ``optimizer`` string fill what the state_dict leaves open.

Files are loaded by :func:`lossview.core.io.torchfiles.load_torch` (``weights_only=True``);
this module only looks at the containers it gets.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lossview.core.run import MetricSeries, Run

SETTING_KEYS = ("name", "lr", "momentum", "nesterov", "betas", "eps", "weight_decay")
#: Where checkpoint dicts keep the optimizer's state_dict (a list for Lightning).
OPTIMIZER_KEYS = ("optimizer_state_dict", "optimizer", "optimizer_states", "optim_state_dict",
                  "optimizer_state", "optim", "opt", "optimizers")
#: Optimizers told apart by a key only they have (param_group or state keys), first match wins.
_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("muon", ("ns_steps",)), ("adafactor", ("beta2_decay",)), ("lbfgs", ("history_size",)),
    ("rprop", ("etas",)), ("asgd", ("lambd", "t0")), ("adadelta", ("rho",)),
    ("adagrad", ("lr_decay",)), ("adagrad", ("initial_accumulator_value",)),
    ("rmsprop", ("alpha", "centered")), ("nadam", ("momentum_decay",)),
    ("adamax", ("exp_inf",)), ("adamw", ("correct_bias",)),  # transformers' own AdamW
    ("sgd", ("momentum", "dampening")), ("sgd", ("nesterov",)), ("sgd", ("momentum_buffer",)),
)
#: timm's ``--opt`` names that are torch classes under another name.
_TIMM = {"momentum": "sgd", "nesterov": "sgd", "rmsproptf": "rmsprop"}


def _num(v: Any) -> float | None:
    """A plain number (or one-element tensor) as a finite float, else None."""
    if isinstance(v, bool):
        return None
    if hasattr(v, "numel") and hasattr(v, "item"):
        if v.numel() != 1 or v.dtype.is_complex:
            return None
        v = v.reshape(-1)[0].item()
    if isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(float(v)):
        return float(v)
    return None


def is_optimizer_state(obj: Any) -> bool:
    """True for an optimizer ``state_dict()``: a mapping with a list of param-group dicts."""
    groups = obj.get("param_groups") if isinstance(obj, Mapping) else None
    return isinstance(groups, (list, tuple)) and bool(groups) and all(
        isinstance(g, Mapping) for g in groups)


def infer_name(group: Mapping[str, Any], state_keys: set[str] = frozenset()) -> tuple[str | None, str]:
    """``(name, why)``: the optimizer family a param group and its state keys reveal."""
    keys = {str(k) for k in group} | set(state_keys)
    for name, needed in _RULES:
        if all(k in keys for k in needed):
            return name, "/".join(needed)
    if "betas" not in keys:
        return None, "its settings match no known optimizer"
    if "decoupled_weight_decay" in keys:
        if "amsgrad" not in keys:
            return "radam", "betas without amsgrad"
        return ("adamw" if group.get("decoupled_weight_decay") else "adam",
                f"decoupled_weight_decay={bool(group.get('decoupled_weight_decay'))}")
    if "amsgrad" in keys:
        wd = _num(group.get("weight_decay")) or 0.0
        if wd == 0:
            return "adam", "betas/amsgrad (Adam, or AdamW without weight decay: the same steps)"
        return "adam", ("betas/amsgrad: Adam or AdamW, which files of PyTorch before 2.6 do not "
                        "tell apart")
    if "weight_decay" not in keys:
        return "sparseadam", "betas without weight_decay"
    return None, "betas, but no key that tells Adam, Adamax or RAdam apart"


def settings_from_group(group: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """The contract keys (without ``source``) from one param group's settings."""
    betas = group.get("betas")
    if isinstance(betas, (list, tuple)) and len(betas) == 2 and all(
            _num(b) is not None for b in betas):
        betas = [_num(b) for b in betas]
    else:
        betas = None
    nesterov = group.get("nesterov")
    return {"name": name, "lr": _num(group.get("lr")), "momentum": _num(group.get("momentum")),
            "nesterov": nesterov if isinstance(nesterov, bool) else None, "betas": betas,
            "eps": _num(group.get("eps")), "weight_decay": _num(group.get("weight_decay"))}


def from_state_dict(sd: Mapping[str, Any]) -> dict[str, Any]:
    """Settings of an optimizer ``state_dict()``'s first param group, with ``why`` (how the
    name was told) and ``groups`` (how many param groups it has)."""
    groups = sd["param_groups"]
    state = sd.get("state")
    first = next(iter(state.values()), None) if isinstance(state, Mapping) else None
    state_keys = {str(k) for k in first} if isinstance(first, Mapping) else set()
    name, why = infer_name(groups[0], state_keys)
    out = settings_from_group(groups[0], name)
    out.update(why=why, groups=len(groups))
    return out


def _args_fill(out: dict[str, Any], args: Any) -> None:
    """Fill gaps from timm's ``args`` (an ``argparse.Namespace`` or dict)."""
    a = vars(args) if hasattr(args, "__dict__") and not isinstance(args, Mapping) else args
    if not isinstance(a, Mapping):
        return
    if out.get("name") is None and isinstance(a.get("opt"), str):
        out["name"] = _TIMM.get(a["opt"].lower(), a["opt"].lower())
        out["why"] = f"args.opt={a['opt']!r}"
    for key, arg in (("lr", "lr"), ("momentum", "momentum"), ("weight_decay", "weight_decay"),
                     ("eps", "opt_eps")):
        if out.get(key) is None and _num(a.get(arg)) is not None:
            out[key] = _num(a.get(arg))
    betas = a.get("opt_betas")
    if (out.get("betas") is None and isinstance(betas, (list, tuple)) and len(betas) == 2
            and all(_num(b) is not None for b in betas)):
        out["betas"] = [_num(b) for b in betas]


def from_checkpoint(obj: Any) -> dict[str, Any] | None:
    """Settings found in a checkpoint dict, with ``where`` (the key, in words); None if none."""
    if not isinstance(obj, Mapping):
        return None
    out: dict[str, Any] | None = None
    for key in OPTIMIZER_KEYS:
        v = obj.get(key)
        if is_optimizer_state(v):
            out, where = from_state_dict(v), f"{key}['param_groups'][0]"
        elif isinstance(v, (list, tuple)) and v and is_optimizer_state(v[0]):
            out, where = from_state_dict(v[0]), f"{key}[0]['param_groups'][0]"
            if len(v) > 1:
                where += f" (the first of {len(v)} optimizers)"
        else:
            continue
        out["where"] = where
        break
    if out is None:
        out = dict.fromkeys(SETTING_KEYS)
        scheds = obj.get("lr_schedulers")
        last = scheds[0].get("_last_lr") if isinstance(scheds, (list, tuple)) and scheds and \
            isinstance(scheds[0], Mapping) else None
        plain = next((k for k in ("lr", "learning_rate") if _num(obj.get(k)) is not None), None)
        if isinstance(last, (list, tuple)) and last and _num(last[0]) is not None:
            out.update(lr=_num(last[0]), where="lr_schedulers[0]['_last_lr']")
        elif plain is not None:
            out.update(lr=_num(obj[plain]), where=f"'{plain}'")
    opt = obj.get("optimizer")
    if out.get("name") is None and isinstance(opt, str) and opt.strip():
        out["name"], out["why"] = opt.strip().lower(), f"'optimizer' = {opt!r}"
    _args_fill(out, obj.get("args"))
    out.setdefault("where", "args" if out.get("lr") is not None else "'optimizer'")
    if all(out.get(k) is None for k in SETTING_KEYS):
        return None
    return out


def describe(s: Mapping[str, Any], file: str) -> str:
    """Where one file's settings came from and how the name was told, in words."""
    text = f"{s.get('where', '')} in {file}"
    if s.get("groups", 1) > 1:
        text += f" (the first of {s['groups']} param groups)"
    if s.get("why"):
        text += f"; name from {s['why']}" if s.get("name") else f"; no name: {s['why']}"
    return text


def spec_from_settings(s: Mapping[str, Any], source: str) -> dict[str, Any]:
    out = {k: s.get(k) for k in SETTING_KEYS}
    out["source"] = source
    return out


def attach_from_snapshots(run: Run) -> None:
    """``run.spec["optimizer"]`` from the settings each snapshot's file held
    (``snapshot.meta["optimizer"]``): the last file's; where the lr differs between files,
    each file's lr becomes the metric series ``lr`` (unless the folder logged one, which
    ``run.metric("lr")`` finds)."""
    per = [(s, s.meta["optimizer"]) for s in run.snapshots if s.meta.get("optimizer")]
    if not per:
        return
    last_snap, last = per[-1]
    source = describe(last, last_snap.source.name)
    lrs = [(s.step, o["lr"]) for s, o in per if o.get("lr") is not None]
    if len({v for _, v in lrs}) > 1:
        values = [v for _, v in lrs]
        source += (f"; the last file's values: lr differs between the {len(lrs)} files "
                   f"({min(values):.4g} to {max(values):.4g})")
        if run.metric("lr") is not None:
            source += ", and the lr the folder logged is kept as the lr series"
        else:
            run.metrics["lr"] = MetricSeries(np.array([p[0] for p in lrs]), np.array(values))
            source += ", each file's value is in the lr series"
    elif len(per) > 1:
        source += f" (the same in all {len(per)} files that hold it)"
    run.spec["optimizer"] = spec_from_settings(last, source)


def peak_lr(series: MetricSeries | None) -> float | None:
    """The largest finite value of a logged learning-rate schedule."""
    if series is None or not len(series):
        return None
    v = series.values[np.isfinite(series.values)]
    return float(v.max()) if v.size else None
