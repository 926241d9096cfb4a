"""Runs made the way users make them, for the acceptance tests of lossview's answers (issue 18).

Every builder is a plain PyTorch loop (walks and loss curves: user_walks.py), never
lossview's trainer, and saves as users save: a bare ``model.state_dict()`` in
``model_{step}.pt``, or the PyTorch tutorial's general checkpoint (``model_state_dict``,
``optimizer_state_dict``, ``loss`` and ``step`` or ``epoch``). Each returns a
:class:`UserRun` holding exactly what it saved (weights in float64, in ``state_dict`` order)
so that the tests compute the truth from the saved run, independently of lossview.

Model files (``--model FILE.py``, docs/surface.md) are written from the same source the
builder executes to make its model, so model file and checkpoints cannot disagree.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lossview.cli import main

# ---------------------------------------------------------------------- running lossview


def analyze(capsys, folder: Path, model: Path | None = None) -> dict:
    """``lossview analyze FOLDER --json [--model FILE]`` as a user runs it: exit 0, one JSON
    object on stdout, no traceback on stderr."""
    capsys.readouterr()
    argv = ["analyze", str(folder), "--json"] + (["--model", str(model)] if model else [])
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    assert rc == 0, f"exit {rc}: {err}"
    return json.loads(out)


def sentences(report: dict) -> list[str]:
    """Every sentence the report says: the diagnosis and each answer's sentence."""
    return list(report["diagnosis"]) + [a["sentence"] for a in report["answers"].values()]


_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def numbers_in(text: str) -> list[float]:
    """The numbers a sentence states (``3,395``, ``5.89e-04``, ``0.001``)."""
    return [float(m.group().replace(",", "")) for m in _NUMBER.finditer(text)]


def states_number(text: str, value: float, rel: float = 0.05) -> bool:
    return any(math.isclose(x, value, rel_tol=rel) for x in numbers_in(text))


# ---------------------------------------------------------------------- saving as users do


@dataclass
class UserRun:
    folder: Path
    steps: list[int]
    weights: np.ndarray                # [T, D] float64: the saved parameters, state_dict order
    losses: np.ndarray | None = None   # the loss saved beside each snapshot
    model_file: Path | None = None
    info: dict = field(default_factory=dict)


@contextlib.contextmanager
def one_thread():
    """Tiny models run fastest on one thread (and leave the other core to the neighbours)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def flat(state: dict) -> np.ndarray:
    return np.concatenate([t.detach().double().numpy().ravel() for t in state.values()])


def save_tutorial(path: Path, model, opt, loss: float, step: int | None = None,
                  epoch: int | None = None) -> None:
    """The PyTorch tutorial's general checkpoint, with ``step`` or ``epoch``."""
    d = {"model_state_dict": model.state_dict(), "optimizer_state_dict": opt.state_dict(),
         "loss": loss}
    d.update({"step": step} if step is not None else {"epoch": epoch})
    torch.save(d, path)


def gd_run(folder: Path, model, opt, loss_of, total: int, every: int) -> UserRun:
    """Full-batch gradient descent; the snapshot of step t holds the weights after t updates
    and the full-batch loss at them (computed before the next update, as users log it)."""
    folder.mkdir(parents=True)
    steps, ws, losses = [], [], []
    for t in range(total + 1):
        opt.zero_grad()
        loss = loss_of(model)
        if t % every == 0:
            save_tutorial(folder / f"ckpt_{t}.pt", model, opt, loss.item(), step=t)
            steps.append(t)
            ws.append(flat(model.state_dict()))
            losses.append(loss.item())
        if t == total:
            break
        loss.backward()
        opt.step()
    return UserRun(folder, steps, np.array(ws), np.array(losses))


MODEL_TAIL = '''
from pathlib import Path as _Path
_DATA = torch.load(_Path(__file__).with_name({data!r}), weights_only=True)

def batches():
    return [(_DATA["x"], _DATA["y"])]

def loss_fn(outputs, targets):
    return {scale!r} * torch.nn.functional.mse_loss(outputs, targets)
'''


def model_from_source(src: str, seed: int):
    ns: dict = {}
    exec(compile(src, "<model file>", "exec"), ns)  # the very source the model file holds
    torch.manual_seed(seed)
    return ns["build_model"]()


def write_model_file(path: Path, src: str, x: torch.Tensor, y: torch.Tensor,
                     scale: float = 1.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.stem + "_data.pt")
    torch.save({"x": x, "y": y}, data)
    path.write_text(src + MODEL_TAIL.format(data=data.name, scale=scale))
    return path


def mse(scale: float = 1.0):
    return lambda out, y: scale * torch.nn.functional.mse_loss(out, y)


# ---------------------------------------------------------------------- the runs

TANH_SRC = '''
import torch

def build_model():
    return torch.nn.Sequential(torch.nn.Linear(5, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
'''


def converging_mlp(folder: Path) -> UserRun:
    """A tanh MLP interpolating 8 noiseless teacher targets, full-batch GD, lr 0.1."""
    with one_thread():
        torch.manual_seed(0)
        x = torch.randn(8, 5)
        teacher = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
        with torch.no_grad():
            y = teacher(x)
        model = model_from_source(TANH_SRC, seed=1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return gd_run(folder, model, opt, lambda m: mse()(m(x), y), total=1000, every=25)


def sgd_stationary(folder: Path, batch: int = 32) -> UserRun:
    """Minibatch SGD (batches drawn with replacement) on a noisy linear regression, constant
    lr, 3000 steps, a snapshot every 25 steps holding the mean minibatch loss since the last.
    Batch 32 keeps the state-dependent part of the gradient noise (which the additive
    Lyapunov prediction leaves out) near 4 % of the additive part; at batch 8 it is ~17 %."""
    n, d, lr, every, total = 400, 10, 0.1, 25, 3000
    with one_thread():
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(n, d, generator=gen)
        y = x @ torch.randn(d, 1, generator=gen) + 0.5 * torch.randn(n, 1, generator=gen)
        torch.manual_seed(1)
        model = torch.nn.Linear(d, 1, bias=False)
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        folder.mkdir(parents=True)
        steps, ws, losses, running = [], [], [], []
        for t in range(total + 1):
            if t % every == 0:
                with torch.no_grad():
                    full = mse()(model(x), y).item()
                loss = float(np.mean(running)) if running else full
                save_tutorial(folder / f"ckpt_{t}.pt", model, opt, loss, step=t)
                steps.append(t)
                ws.append(flat(model.state_dict()))
                losses.append(loss)
                running = []
            if t == total:
                break
            idx = torch.randint(n, (batch,), generator=gen)
            opt.zero_grad()
            loss_t = mse()(model(x[idx]), y[idx])
            loss_t.backward()
            opt.step()
            running.append(loss_t.item())
    info = {"x": x.double().numpy(), "y": y.double().numpy(), "lr": lr, "batch": batch}
    return UserRun(folder, steps, np.array(ws), np.array(losses), info=info)


LINREG_SRC = '''
import torch

def build_model():
    return torch.nn.Linear(8, 1, bias=False)
'''


def linreg_data() -> tuple[torch.Tensor, torch.Tensor]:
    """64 samples, 8 features scaled 10^0.5 ... 10^-1: Hessian condition number ~ 1000."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(64, 8, generator=gen) * torch.logspace(0.5, -1, 8)
    return x, x @ torch.randn(8, 1, generator=gen)


def linreg_gd(folder: Path, model_file: Path, lr: float, momentum: float, total: int,
              every: int) -> UserRun:
    """Full-batch GD (torch.optim.SGD, heavy-ball momentum) on the mean squared error."""
    x, y = linreg_data()
    with one_thread():
        model = model_from_source(LINREG_SRC, seed=6)
        opt = torch.optim.SGD(model.parameters(), lr=float(lr), momentum=float(momentum))
        run = gd_run(folder, model, opt, lambda m: mse()(m(x), y), total, every)
    run.model_file = model_file
    run.info.update(lr=float(lr), momentum=float(momentum))
    return run


RELU_SRC = '''
import torch

def build_model():
    return torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32),
                               torch.nn.ReLU(), torch.nn.Linear(32, 1))
'''


def diverging_relu(root: Path) -> UserRun:
    """A ReLU MLP on MSE with lr 1.5, far too large: the loss overflows after ~10 steps; the
    user's loop goes on saving every step until step 24."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(64, 4, generator=gen)
    y = torch.sin(x.sum(1, keepdim=True))
    mf = write_model_file(root / "relu_model.py", RELU_SRC, x, y)
    with one_thread():
        model = model_from_source(RELU_SRC, seed=0)
        opt = torch.optim.SGD(model.parameters(), lr=1.5)
        run = gd_run(root / "run", model, opt, lambda m: mse()(m(x), y), total=24, every=1)
    run.model_file = mf
    return run


UV_SRC = '''
import math
import torch

class UV(torch.nn.Module):
    """Lewkowycz et al. 2020's two-layer linear model f(x) = v . (u x) / sqrt(m)."""

    def __init__(self, m=64, d=2):
        super().__init__()
        self.u = torch.nn.Parameter(torch.randn(m, d))
        self.v = torch.nn.Parameter(torch.randn(m))

    def forward(self, x):
        return ((x @ self.u.T) @ self.v / math.sqrt(self.u.shape[0])).unsqueeze(1)

def build_model():
    return UV()
'''


def uv_data() -> tuple[torch.Tensor, torch.Tensor]:
    """One data point: a unit vector x, target 1."""
    x = torch.tensor([[0.6, 0.8]])
    return x, torch.ones(1, 1)


def uv_hessian(params: np.ndarray) -> np.ndarray:
    """Exact Hessian (float64, autograd) of 0.5 (f - y)^2 at the flat parameters [u, v]."""
    x, y = (t.double() for t in uv_data())
    m, d = 64, 2

    def loss(p):
        u, v = p[: m * d].view(m, d), p[m * d:]
        f = (x @ u.T) @ v / math.sqrt(m)
        return 0.5 * ((f - y[:, 0]) ** 2).mean()

    h = torch.autograd.functional.hessian(loss, torch.from_numpy(params), vectorize=True)
    return h.numpy()


def catapult(root: Path, ratio: float = 3.0) -> UserRun:
    """GD on the uv model with lr = ratio / lambda_0 (2 < ratio < 4: the catapult phase),
    a snapshot every 5 steps; ``info["all_losses"]`` is the loss at every step."""
    x, y = uv_data()
    mf = write_model_file(root / "uv_model.py", UV_SRC, x, y, scale=0.5)
    with one_thread():
        model = model_from_source(UV_SRC, seed=0)
        lam0 = float(np.linalg.eigvalsh(uv_hessian(flat(model.state_dict())))[-1])
        lr = ratio / lam0
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        every_loss: list[float] = []

        def loss_of(m):
            loss = mse(0.5)(m(x), y)
            every_loss.append(loss.item())
            return loss

        run = gd_run(root / "run", model, opt, loss_of, total=60, every=5)
    run.model_file = mf
    run.info.update(lr=lr, lam0=lam0, all_losses=np.array(every_loss))
    return run


def per_epoch(folder: Path, epochs: int = 40) -> UserRun:
    """Minibatch SGD (lr 0.1, batch 16) on a small noisy tanh regression, one tutorial checkpoint
    ``epoch_{e}.pt`` after each epoch holding the epoch's mean loss."""
    with one_thread():
        gen = torch.Generator().manual_seed(11)
        x = torch.randn(64, 3, generator=gen)
        y = torch.tanh(x @ torch.randn(3, 1, generator=gen))
        y += 0.3 * torch.randn(64, 1, generator=gen)
        torch.manual_seed(12)
        model = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        folder.mkdir(parents=True)
        ws, losses = [], []
        for epoch in range(epochs):
            batch_losses = []
            for idx in torch.randperm(64, generator=gen).split(16):
                opt.zero_grad()
                loss = mse()(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
                batch_losses.append(loss.item())
            save_tutorial(folder / f"epoch_{epoch}.pt", model, opt, float(np.mean(batch_losses)),
                          epoch=epoch)
            ws.append(flat(model.state_dict()))
            losses.append(float(np.mean(batch_losses)))
    return UserRun(folder, list(range(epochs)), np.array(ws), np.array(losses))
