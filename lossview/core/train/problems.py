"""Built-in problems: model + data + loss, each chosen to show one phenomenon on a CPU in seconds.

A problem is rebuilt exactly from its JSON ``spec`` (what ``run.json`` stores under
``"problem"``), so a lossview run never needs the user's code for loss surfaces. Its loss
is always ``loss_fn(model(inputs), targets)``, a mean over samples made of plain torch
ops, so it can be evaluated under ``torch.func.functional_call``/``vmap``.

See docs/training.md for what each problem demonstrates and the formulas behind it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lossview.core.errors import LossviewError
from lossview.core.train import data as _data
from lossview.core.train.eos import EdgeOfStabilityParts

Data = tuple[torch.Tensor, torch.Tensor]


class Problem:
    """Base class. Subclasses set the class attributes and ``_build`` / ``_model``.

    Attributes
    ----------
    name : the CLI and run-format name.
    spec : ``{"name", "seed", **options}``; ``problem_from_spec(spec)`` rebuilds it.
    description : one paragraph on what it shows (for the GUI).
    train_data, val_data : ``(inputs, targets)`` tensors; ``val_data`` may be None.
    default_* : hyper-parameters that show the phenomenon.
    scale_invariant : parameter names the loss does not depend on the scale of.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: option name -> default value (the type of the default is the option's type)
    options: ClassVar[dict[str, Any]] = {}
    task: ClassVar[str] = "regression"  # or "classification" (label noise flips labels)
    default_optimizer: ClassVar[str] = "sgd"
    default_lr: ClassVar[float] = 0.1
    default_momentum: ClassVar[float] = 0.0
    default_steps: ClassVar[int] = 2000
    default_batch_size: ClassVar[int | None] = 32
    default_every: ClassVar[int] = 20
    #: "shuffle" (a fresh permutation per epoch) or "replacement" (i.i.d. batches)
    default_sampling: ClassVar[str] = "shuffle"
    scale_invariant: ClassVar[tuple[str, ...]] = ()

    def __init__(self, seed: int = 0, **options: Any) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise LossviewError(f"problem seed must be an integer, not {seed!r}")
        self.seed = int(seed)
        self.opts = _validate(self.name, self.options, options)
        self.train_data: Data
        self.val_data: Data | None = None
        self._build()

    # -- to override ---------------------------------------------------------------
    def _build(self) -> None:
        raise NotImplementedError

    def _model(self) -> nn.Module:
        raise NotImplementedError

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # -- common --------------------------------------------------------------------
    @property
    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, **self.opts}

    @property
    def n_train(self) -> int:
        return int(self.train_data[0].shape[0])

    def make_model(self) -> nn.Module:
        """A freshly initialised model; the same seed gives bit-identical weights."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self._model()

    def noisy_targets(self, targets: torch.Tensor, level: float, generator: torch.Generator
                      ) -> torch.Tensor:
        """Label noise: regression adds N(0, level^2) to the targets; classification
        replaces each label by a uniformly random class with probability ``level``."""
        if self.task == "classification":
            flip = torch.rand(targets.shape, generator=generator) < level
            rand = torch.randint(0, self.n_classes, targets.shape, generator=generator)
            return torch.where(flip, rand, targets)
        return targets + level * torch.randn(targets.shape, generator=generator, dtype=targets.dtype)

    @torch.no_grad()
    def full_loss(self, model: nn.Module, data: Data) -> float:
        """Loss over a whole dataset, in eval mode (BatchNorm uses its running statistics)."""
        was = model.training
        model.eval()
        try:
            return float(self.loss_fn(model(data[0]), data[1]))
        finally:
            model.train(was)

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.opts.items())
        return f"{type(self).__name__}(seed={self.seed}, {opts})"


def _validate(name: str, allowed: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = dict(allowed)
    for k, v in given.items():
        if k not in allowed:
            known = ", ".join(allowed) or "none"
            raise LossviewError(f"problem {name!r} has no option {k!r} (options: {known})")
        default = allowed[k]
        if isinstance(default, bool):
            ok = isinstance(v, (bool, np.bool_))
        elif isinstance(default, int):
            ok = isinstance(v, (int, np.integer)) and not isinstance(v, bool)
        elif isinstance(default, float):
            ok = isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
        else:
            ok = isinstance(v, type(default))
        if not ok:
            raise LossviewError(f"problem {name!r}: option {k}={v!r} must be a {type(default).__name__}")
        out[k] = type(default)(v)
    for k, v in out.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v < 0:
            raise LossviewError(f"problem {name!r}: option {k}={v!r} must not be negative")
    return out


# -- quadratic ------------------------------------------------------------------------
class _Point(nn.Module):
    """The model of the quadratic: one parameter vector ``w``; the output is ``w`` per sample."""

    def __init__(self, w0: torch.Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w.expand(x.shape[0], -1)


class Quadratic(Problem):
    r"""Noisy quadratic with a known Hessian spectrum.

    Per-sample loss ``l_j(w) = 1/2 (w - c_j)' H (w - c_j)`` with ``H = Q diag(h) Q'``,
    ``h`` log-spaced from ``min_eig`` to ``max_eig`` (exactly 1 by default) and ``Q`` a
    seeded random rotation (identity with ``rotate=False``). The centres ``c_j`` are
    whitened: their mean is exactly 0 (the minimum) and their covariance exactly
    ``noise^2 I``. So the per-sample gradient noise ``H (c_bar - c_j)`` has covariance
    ``noise^2 H^2`` and, with i.i.d. batches of size B, constant-lr SGD is stationary with
    variance ``lr noise^2 h / (B (2 - lr h))`` along each eigenvector (Mandt et al. 2017,
    discrete time); plain GD diverges for ``lr > 2 / max_eig`` (with heavy-ball momentum
    beta: ``lr > (2 + 2 beta) / max_eig``).
    """

    name = "quadratic"
    description = (
        "A noisy quadratic bowl in a few dozen dimensions whose Hessian spectrum is known "
        "(largest curvature exactly 1). Gradient descent is stable for lr < 2 and blows up "
        "above it (lr < 2 + 2*momentum with momentum); with mini-batch noise, constant-lr SGD "
        "does not converge to the minimum but settles into a stationary cloud whose spread "
        "along each eigen-direction is known in closed form: the loss is flat while the "
        "weights keep moving."
    )
    options = {"dim": 30, "n": 1024, "noise": 1.0, "min_eig": 0.01, "max_eig": 1.0,
               "init_scale": 3.0, "rotate": True}
    default_lr = 0.5
    default_steps = 4000
    default_batch_size = 1
    default_every = 20
    default_sampling = "replacement"

    def _build(self) -> None:
        o = self.opts
        d, n = o["dim"], o["n"]
        if d < 1 or n < d + 1:
            raise LossviewError(f"quadratic needs dim >= 1 and n > dim (got dim={d}, n={n})")
        if not 0 < o["min_eig"] <= o["max_eig"]:
            raise LossviewError("quadratic needs 0 < min_eig <= max_eig")
        rng = np.random.default_rng(self.seed)
        h = np.geomspace(o["min_eig"], o["max_eig"], d) if d > 1 else np.array([o["max_eig"]])
        h[-1] = o["max_eig"]
        q = np.linalg.qr(rng.normal(size=(d, d)))[0] if o["rotate"] else np.eye(d)
        z = rng.normal(size=(n, d))
        z -= z.mean(0)
        z = z @ np.linalg.inv(np.linalg.cholesky(z.T @ z / n)).T  # empirical cov exactly I
        c = o["noise"] * z @ q.T
        self.eigenvalues = h
        self.eigenvectors = q  # columns
        self.hessian = torch.from_numpy(q @ np.diag(h) @ q.T).float()
        self.optimum = np.zeros(d)
        self.train_data = (torch.zeros(n, 1), torch.from_numpy(c).float())
        self.val_data = None

    def _model(self) -> nn.Module:
        return _Point(self.opts["init_scale"] * torch.randn(self.opts["dim"]))

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        r = outputs - targets
        return 0.5 * ((r @ self.hessian) * r).sum(-1).mean()

    def stationary_variance(self, lr: float, batch_size: int) -> np.ndarray:
        """Exact stationary variance of constant-lr SGD (i.i.d. batches) per eigenvector."""
        h = self.eigenvalues
        return lr * self.opts["noise"] ** 2 * h / (batch_size * (2.0 - lr * h))


# -- linear regression ----------------------------------------------------------------
class LinReg(Problem):
    """Over-parameterised least squares: ``n`` samples, ``dim > n`` weights."""

    name = "linreg"
    description = (
        "Over-parameterised linear regression (more weights than samples). There is a "
        "whole affine subspace of exact minima, so the training loss goes to ~0 while the "
        "weights stop wherever the start put them: gradient descent only moves within the "
        "span of the data, ending at w0 + X^+(y - X w0), not at the minimum-norm solution."
    )
    options = {"n": 20, "dim": 100, "n_val": 200, "noise": 0.0}
    default_lr = 0.5
    default_steps = 500
    default_batch_size = None
    default_every = 5

    def _build(self) -> None:
        n, d = self.opts["n"], self.opts["dim"]
        if n < 1 or d < 1:
            raise LossviewError("linreg needs n >= 1 and dim >= 1")
        g = torch.Generator().manual_seed(self.seed)
        teacher = torch.randn(d, generator=g) / np.sqrt(n)
        # rows of norm ~sqrt(n): the nonzero Hessian eigenvalues X'X/n lie near
        # (1 +- sqrt(n/dim))^2, so lr 0.5 converges fast and stays stable
        x = torch.randn(n + self.opts["n_val"], d, generator=g) * np.sqrt(n / d)
        y = x @ teacher + self.opts["noise"] * torch.randn(len(x), generator=g)
        self.train_data = (x[:n].contiguous(), y[:n].contiguous())
        self.val_data = (x[n:].contiguous(), y[n:].contiguous()) if self.opts["n_val"] else None

    def _model(self) -> nn.Module:
        lin = nn.Linear(self.opts["dim"], 1, bias=False)
        nn.init.normal_(lin.weight, std=1.0)
        return nn.Sequential(OrderedDict(fc=lin, flat=nn.Flatten(0)))

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((outputs - targets) ** 2).mean()


# -- classifiers on 8x8 images --------------------------------------------------------
class _Images(Problem):
    task = "classification"
    n_classes = _data.N_CLASSES
    flat_inputs = True

    def _build(self) -> None:
        src = _data.resolve_source(self.opts["data"])
        self.opts["data"] = src  # the spec names the data actually used
        images, labels = _data.load_images(src)
        (xt, yt), (xv, yv) = _data.split(images, labels, self.seed)
        shape = (-1, 64) if self.flat_inputs else (-1, 1, 8, 8)
        self.train_data = (xt.reshape(shape).contiguous(), yt)
        self.val_data = (xv.reshape(shape).contiguous(), yv)

    def loss_fn(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)


_DIGITS_NOTE = " Data: the 8x8 handwritten digits (UCI, as scikit-learn ships them; lossview ships a copy)."


class MLP(_Images):
    name = "mlp"
    description = (
        "A small ReLU MLP (64-32-32-10) classifying 8x8 digits with constant-lr SGD. The "
        "training loss drops and plateaus within a few hundred steps, then the weights keep "
        "wandering: the gradient norm stays well above zero and the distance from the start "
        "keeps growing while the loss is flat." + _DIGITS_NOTE
    )
    options = {"data": "auto", "hidden": 32}
    default_lr = 0.3
    default_steps = 3000
    default_batch_size = 32
    default_every = 20

    def _model(self) -> nn.Module:
        h = self.opts["hidden"]
        return nn.Sequential(OrderedDict(
            fc1=nn.Linear(64, h), act1=nn.ReLU(), fc2=nn.Linear(h, h), act2=nn.ReLU(),
            out=nn.Linear(h, self.n_classes)))


class BNMLP(_Images):
    name = "bn-mlp"
    description = (
        "The MLP with BatchNorm after each hidden linear layer (no bias). The weights "
        "before each BatchNorm are scale-invariant: the loss does not depend on their "
        "norm, so the gradient is orthogonal to them and plain SGD grows their norm at "
        "every step (|w|^2 increases by lr^2 |g|^2) while the loss is flat; the growing "
        "norm shrinks the effective learning rate lr/|w|^2." + _DIGITS_NOTE
    )
    options = {"data": "auto", "hidden": 32}
    default_lr = 0.5
    default_steps = 3000
    default_batch_size = 32
    default_every = 20
    scale_invariant = ("fc1.weight", "fc2.weight")

    def _model(self) -> nn.Module:
        h = self.opts["hidden"]
        return nn.Sequential(OrderedDict(
            fc1=nn.Linear(64, h, bias=False), bn1=nn.BatchNorm1d(h), act1=nn.ReLU(),
            fc2=nn.Linear(h, h, bias=False), bn2=nn.BatchNorm1d(h), act2=nn.ReLU(),
            out=nn.Linear(h, self.n_classes)))


class CNN(_Images):
    name = "cnn"
    description = (
        "A small conv net (two 3x3 conv layers with max-pooling, then a linear layer) on "
        "the 8x8 digits: the same plateau-then-wandering picture as the MLP, with "
        "weight-sharing filters." + _DIGITS_NOTE
    )
    options = {"data": "auto", "channels": 8}
    flat_inputs = False
    default_lr = 0.1
    default_steps = 2000
    default_batch_size = 32
    default_every = 20

    def _model(self) -> nn.Module:
        c = self.opts["channels"]
        return nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(1, c, 3, padding=1), act1=nn.ReLU(), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(c, 2 * c, 3, padding=1), act2=nn.ReLU(), pool2=nn.MaxPool2d(2),
            flat=nn.Flatten(), out=nn.Linear(2 * c * 4, self.n_classes)))


class EdgeOfStability(EdgeOfStabilityParts, Problem):
    """Full-batch GD on a tanh MLP with MSE: sharpness rises to 2/lr and hovers (eos.py)."""


PROBLEMS: dict[str, type[Problem]] = {
    cls.name: cls for cls in (Quadratic, LinReg, MLP, BNMLP, CNN, EdgeOfStability)
}


def build_problem(name: str, seed: int = 0, **options: Any) -> Problem:
    """The built-in problem ``name`` (see :data:`PROBLEMS`); LossviewError if unknown or a bad option."""
    cls = PROBLEMS.get(name)
    if cls is None:
        raise LossviewError(f"unknown problem {name!r} (choose from {', '.join(PROBLEMS)})")
    return cls(seed=seed, **options)


def problem_from_spec(spec: dict[str, Any]) -> Problem:
    """Rebuild the identical problem (same data, same initial model) from ``Problem.spec``."""
    if not isinstance(spec, dict) or "name" not in spec:
        raise LossviewError("the run's problem spec is missing or has no 'name'")
    opts = dict(spec)
    name = opts.pop("name")
    seed = opts.pop("seed", 0)
    return build_problem(name, seed, **opts)
