"""Where the model, loss and data of a run come from, for surfaces and curvature.

- lossview's own runs name a built-in problem in ``run.json``: it is rebuilt exactly
  (:func:`lossview.core.train.problems.problem_from_spec`), no user code involved.
- Foreign checkpoint folders hold weights only. The user may pass a Python file
  (``--model FILE.py``) that defines::

      def build_model() -> torch.nn.Module      # parameter names = the checkpoints' names
      def batches() -> iterable of (inputs, targets)   # the data the loss is averaged over
      def loss_fn(outputs, targets) -> scalar tensor   # mean loss of a batch

  ``loss_fn`` may be left out only when every batch's targets are integer class indices:
  then the loss is :func:`torch.nn.functional.cross_entropy`, and
  :attr:`ModelSource.loss_note` says so. Float targets without ``loss_fn`` are an error
  (cross-entropy on them gave an all-zero surface, silently).

  **Loading that file runs its code** (with the permissions of the lossview process). It
  is only ever imported on that explicit request, never discovered automatically.
- Hugging Face folders (``config.json``) need no code: with ``data`` (``--data FILE``) the
  model is rebuilt from the config and uses its own loss
  (:mod:`lossview.core.surface.hf_model`; never ``trust_remote_code``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lossview.core.errors import LossviewError
from lossview.core.run import Run

CONTRACT = ("build_model() -> nn.Module, batches() -> iterable of (inputs, targets), "
            "loss_fn(outputs, targets) -> mean loss (optional for integer class targets)")
#: What :attr:`ModelSource.loss_note` says when cross-entropy stands in for a missing loss_fn.
CROSS_ENTROPY_NOTE = "loss_fn not given: cross-entropy, since targets are integer class indices"


@dataclass
class ModelSource:
    """A model to load snapshots into, its loss and the data the loss averages over."""

    model: nn.Module
    loss_fn: Callable
    data: list[tuple[Any, Any]]
    origin: str  # "problem NAME" or "model file PATH"
    val_data: list[tuple[Any, Any]] | None = None
    #: How the loss was chosen when the model file did not say (else None).
    loss_note: str | None = None


def load_model_file(path: str | Path) -> ModelSource:
    """Import the user's model file (this runs their code) and check its contract."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LossviewError(f"model file not found: {path}")
    if path.suffix != ".py":
        raise LossviewError(f"model file must be a .py file: {path}")
    name = f"lossview_user_model_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LossviewError(f"cannot import model file {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # runs the user's code: explicit opt-in only
    except Exception as e:  # noqa: BLE001 - any failure of their code is reported in one line
        raise LossviewError(f"running your model file {path} failed: {type(e).__name__}: "
                            f"{_one_line(e)}") from None
    finally:
        sys.modules.pop(name, None)
    for fn in ("build_model", "batches"):
        if not callable(getattr(module, fn, None)):
            raise LossviewError(f"model file {path} does not define {fn}(); it must define {CONTRACT}")
    try:
        model = module.build_model()
        data = [tuple(b) for b in module.batches()]
    except Exception as e:  # noqa: BLE001
        raise LossviewError(f"your model file {path} raised {type(e).__name__}: {_one_line(e)}") from None
    if not isinstance(model, nn.Module):
        raise LossviewError(f"build_model() in {path} returned {type(model).__name__}, not a torch.nn.Module")
    if not data or any(len(b) != 2 for b in data):
        raise LossviewError(f"batches() in {path} must yield at least one (inputs, targets) pair")
    loss_fn = getattr(module, "loss_fn", None)
    if loss_fn is None:
        bad = [y for _, y in data if not _class_indices(y)]
        if bad:
            what = (f"{str(bad[0].dtype).replace('torch.', '')} tensors" if torch.is_tensor(bad[0])
                    else type(bad[0]).__name__)
            raise LossviewError(
                f"model file {path} defines no loss_fn and its targets are {what}, not integer "
                "class indices: define loss_fn(outputs, targets) returning the batch's mean "
                "loss (e.g. torch.nn.functional.mse_loss)")
        return ModelSource(model, torch.nn.functional.cross_entropy, data, f"model file {path}",
                           loss_note=CROSS_ENTROPY_NOTE)
    if not callable(loss_fn):
        raise LossviewError(f"loss_fn in {path} is not callable")
    return ModelSource(model, loss_fn, data, f"model file {path}")


def _class_indices(y: Any) -> bool:
    """Integer class-index targets: a tensor of an integer dtype (not bool)."""
    return (torch.is_tensor(y) and not torch.is_floating_point(y) and not torch.is_complex(y)
            and y.dtype != torch.bool)


def model_source(run: Run, model_file: str | Path | None = None,
                 data: str | Path | None = None, block_size: int | None = None) -> ModelSource:
    """The model, loss and data for ``run``, or a LossviewError saying what is missing.

    ``data`` (the CLI's ``--data FILE``, with ``block_size``) is for Hugging Face folders
    without a model file: the model is rebuilt from their ``config.json``
    (:mod:`lossview.core.surface.hf_model`).
    """
    if (data is not None or block_size is not None) and (model_file is not None
                                                         or run.spec.get("problem")):
        whose = "your model file's batches()" if model_file is not None else \
            f"its built-in problem's ({run.spec['problem'].get('name')})"
        raise LossviewError(f"--data and --block-size are for Hugging Face folders without a "
                            f"model file; this run's data is {whose}")
    if model_file is not None:
        src = load_model_file(model_file)
    elif data is not None:
        from lossview.core.surface.hf_model import hf_source

        src = hf_source(run, data, block_size)
    elif block_size is not None:
        raise LossviewError("--block-size needs --data FILE")
    else:
        problem = run.spec.get("problem")
        if not problem:
            raise LossviewError(_needs_model(run))
        from lossview.core.train.problems import problem_from_spec

        p = problem_from_spec(problem)
        val = [tuple(p.val_data)] if p.val_data is not None else None
        src = ModelSource(p.make_model(), p.loss_fn, [tuple(p.train_data)],
                          f"problem {problem.get('name')}", val)
    check_names(src.model, run)
    return src


def _needs_model(run: Run) -> str:
    from lossview.core.surface.hf_model import DATA_HELP, hf_config_folder

    if hf_config_folder(run) is not None:
        return (f"loss surfaces need data: this Hugging Face folder's model is rebuilt from "
                f"its config.json when you pass {DATA_HELP}; or pass --model FILE.py "
                "(see docs/surface.md)")
    return (f"loss surfaces need the model and data, which this {run.format} folder does not "
            f"hold; pass --model FILE.py defining {CONTRACT} (this runs your code; see "
            "docs/surface.md)")


def check_names(model: nn.Module, run: Run) -> None:
    """The model's parameters must be exactly the run's, with the same shapes."""
    own = {n: tuple(p.shape) for n, p in model.named_parameters()}
    theirs = run.param_shapes
    missing = [n for n in theirs if n not in own]
    extra = [n for n in own if n not in theirs]
    if missing or extra:
        what = (f"the checkpoints have {missing[0]!r}, the model does not" if missing
                else f"the model has {extra[0]!r}, the checkpoints do not")
        raise LossviewError(f"model and checkpoints do not match: {what} "
                            f"({len(missing)} missing, {len(extra)} extra parameter names)")
    for n, s in theirs.items():
        if tuple(s) != own[n]:
            raise LossviewError(f"model and checkpoints do not match: {n} has shape {own[n]} "
                                f"in the model, {tuple(s)} in the checkpoints")


def snapshot_tensors(run: Run, i: int, model: nn.Module) -> tuple[dict, dict]:
    """Parameters and buffers of snapshot ``i`` as tensors in the model's dtypes, on the
    model's devices."""
    ref = dict(model.named_parameters())
    bufs = dict(model.named_buffers())
    p = {n: torch.as_tensor(v).to(ref[n].device, ref[n].dtype)
         for n, v in run.params(i).items() if n in ref}
    b = {n: torch.as_tensor(v).to(bufs[n].device, bufs[n].dtype)
         for n, v in run.buffers(i).items() if n in bufs}
    return p, b


def _one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]
