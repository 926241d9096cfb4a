"""Distance modulo neuron permutations: Git Re-Basin weight matching (Ainsworth et al. 2022).

Hidden units of a chain of Linear / Conv layers can be relabelled without changing the
function: permuting the outputs of layer l (rows of W_l, b_l, its BatchNorm parameters and
running statistics) and the inputs of layer l+1 (columns of W_{l+1}). Weight matching looks
for the relabelling pi of network B closest to network A,
``min_pi ||theta_A - pi(theta_B)||``, by coordinate descent: for each hidden layer in turn
(random order every sweep) solve the linear assignment

    pi_l = argmax_P  < S_l, P >,   S_l = W_l^A (W_l^B[:, pi_{l-1}])^T + b_l^A b_l^B^T
                                        + (W_{l+1}^A)^T W_{l+1}^B[pi_{l+1}, :]

(plus BatchNorm vectors), with ``scipy.optimize.linear_sum_assignment``, until a full sweep
improves no layer. The layer chain is inferred from state-dict names and shapes; anything
it cannot prove sequential gets ``None`` and a reason instead of a wrong number.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from lossview.core.io.naming import natural_key, numbers_in
from lossview.core.run import Run

NORM_STATS = ("running_mean", "running_var")
MAX_SWEEPS = 100
#: Rough budget of linear-assignment work per report (sum of n^3 over layers, sweeps, snapshots).
WORK_BUDGET = 2e10


@dataclass
class Layer:
    prefix: str
    weight: str
    bias: str | None
    out: int
    inp: int
    #: names of 1-D tensors permuted with this layer's outputs (norm weight/bias/stats)
    vectors: list[str] = field(default_factory=list)


@dataclass
class Layout:
    """A chain of layers; ``flatten[l]`` is how many input columns of layer l+1 belong to
    one output unit of layer l (1, or h*w when a Conv feeds a Linear through flatten)."""

    layers: list[Layer]
    flatten: list[int]

    @property
    def hidden_sizes(self) -> list[int]:
        return [layer.out for layer in self.layers[:-1]]


class NotInferable(ValueError):
    """The state dict is not a chain of Linear/Conv layers this module can permute."""


def _feeds(a: Layer, b: Layer, shapes: dict) -> int | None:
    """Columns of ``b`` per output unit of ``a`` if ``a`` can feed ``b``, else None."""
    if b.inp == a.out:
        return 1
    if len(shapes[a.weight]) > 2 and len(shapes[b.weight]) == 2 and b.inp % a.out == 0:
        return b.inp // a.out  # Conv -> flatten -> Linear
    return None


def _order(layers: list[Layer], shapes: dict) -> list[Layer]:
    """The layers in natural name order if that is a chain; else the unique chain the shapes
    allow (state dicts saved as safetensors lose their order); else refuse."""
    if all(_feeds(a, b, shapes) for a, b in itertools.pairwise(layers)):
        return layers
    starts = [l for l in layers if not any(_feeds(o, l, shapes) for o in layers if o is not l)]
    if len(starts) != 1:
        raise NotInferable("the layer order cannot be told from names and shapes "
                           "(residual or non-sequential architecture)")
    chain, left = starts, [l for l in layers if l is not starts[0]]
    while left:
        nxt = [l for l in left if _feeds(chain[-1], l, shapes)]
        if len(nxt) != 1:
            raise NotInferable(
                f"after '{chain[-1].prefix}' ({chain[-1].out} outputs) "
                + ("no layer takes its outputs" if not nxt else
                   f"{len(nxt)} layers could come next") + ": residual or non-sequential architecture")
        chain.append(nxt[0])
        left.remove(nxt[0])
    return chain


def _attach_norm(prefix: str, size: int, before: Layer | None, layers: list[Layer]) -> Layer:
    """The layer a norm module belongs to: the only one with ``size`` outputs, else the one
    just before it in name order, else the one whose name carries the same numbers."""
    cands = [l for l in layers if l.out == size]
    if len(cands) == 1:
        return cands[0]
    if before is not None and before in cands:
        return before
    same = [l for l in cands if numbers_in(l.prefix) == numbers_in(prefix)]
    if len(same) == 1:
        return same[0]
    raise NotInferable(f"norm layer '{prefix}' of size {size} cannot be matched to one layer")


def infer_layout(shapes: dict[str, tuple[int, ...]], buffers: list[str] = ()) -> Layout:
    """Infer the layer chain from parameter names and shapes (raises :class:`NotInferable`).

    Modules whose ``weight`` has 2+ dimensions are Linear/Conv layers; a module with a 1-D
    ``weight`` is a norm layer permuted with the layer it belongs to (see
    :func:`_attach_norm`). Layers are chained in natural name order when the shapes agree,
    else in the only order the shapes allow.
    """
    modules: dict[str, dict[str, tuple[int, ...]]] = {}
    for name, shape in shapes.items():
        prefix, _, leaf = name.rpartition(".")
        modules.setdefault(prefix, {})[leaf] = tuple(shape)
    items: list[tuple[str, dict]] = sorted(modules.items(), key=lambda kv: natural_key(kv[0]))
    layers: list[Layer] = []
    norms: list[tuple[str, int, Layer | None]] = []
    for prefix, leaves in items:
        extra = set(leaves) - {"weight", "bias"}
        if extra or "weight" not in leaves:
            raise NotInferable(f"'{prefix or '(top level)'}' holds {sorted(leaves)}: "
                               "not a Linear, Conv or norm layer")
        w = leaves["weight"]
        full = (prefix + "." if prefix else "")
        bias = full + "bias" if "bias" in leaves else None
        if bias is not None and leaves["bias"] != (w[0],):
            raise NotInferable(f"'{bias}' has shape {list(leaves['bias'])}, expected [{w[0]}]")
        if len(w) >= 2:
            layers.append(Layer(prefix, full + "weight", bias, int(w[0]), int(w[1])))
        elif len(w) == 1:
            norms.append((prefix, int(w[0]), layers[-1] if layers else None))
        else:
            raise NotInferable(f"'{full}weight' is a scalar")
    if len(layers) < 2:
        raise NotInferable("no hidden layer to permute (fewer than two Linear/Conv layers)")
    owners: set[str] = set()
    for prefix, size, before in norms:
        layer = _attach_norm(prefix, size, before, layers)
        if layer.prefix in owners:
            raise NotInferable(f"two norm layers would belong to '{layer.prefix}'")
        owners.add(layer.prefix)
        full = prefix + "." if prefix else ""
        layer.vectors += [full + "weight"] + ([full + "bias"] if full + "bias" in shapes else [])
        layer.vectors += [full + s for s in NORM_STATS if full + s in set(buffers)]
    layers = _order(layers, shapes)
    return Layout(layers, [_feeds(a, b, shapes) for a, b in itertools.pairwise(layers)])


def layout_of(run: Run) -> Layout:
    return infer_layout(run.param_shapes, run.buffer_names)


# -- applying permutations -------------------------------------------------------------
def _take_in(w: np.ndarray, perm: np.ndarray, f: int) -> np.ndarray:
    """Permute the input axis (1) of ``w`` in groups of ``f`` columns."""
    if f == 1:
        return w[:, perm]
    o = w.shape[0]
    return w.reshape(o, -1, f)[:, perm].reshape(w.shape)


def apply_permutation(params: dict[str, np.ndarray], layout: Layout,
                      perms: list[np.ndarray]) -> dict[str, np.ndarray]:
    """``pi(params)``: unit ``perms[l][i]`` of hidden layer l becomes unit i (same function)."""
    out = dict(params)
    for l, layer in enumerate(layout.layers):
        if l < len(perms):
            p = perms[l]
            out[layer.weight] = out[layer.weight][p]
            for n in ([layer.bias] if layer.bias else []) + layer.vectors:
                if n in out:
                    out[n] = out[n][p]
        if l > 0:
            out[layer.weight] = _take_in(out[layer.weight], perms[l - 1], layout.flatten[l - 1])
    return out


def _unit_rows(params: dict[str, np.ndarray], layout: Layout, l: int,
               perms: list[np.ndarray]) -> np.ndarray:
    """All weights attached to the units of hidden layer l, one row per unit, with the
    neighbouring permutations applied (layer l's own one left out)."""
    layer, nxt = layout.layers[l], layout.layers[l + 1]
    w = params[layer.weight]
    if l > 0:
        w = _take_in(w, perms[l - 1], layout.flatten[l - 1])
    parts = [w.reshape(layer.out, -1)]
    parts += [params[n].reshape(layer.out, 1) for n in ([layer.bias] if layer.bias else []) + layer.vectors
              if n in params]
    w2 = params[nxt.weight]
    if l + 1 < len(perms):
        w2 = w2[perms[l + 1]]
    f = layout.flatten[l]
    w2 = w2.reshape(w2.shape[0], layer.out, f, -1).transpose(1, 0, 2, 3).reshape(layer.out, -1)
    parts.append(w2)
    return np.concatenate(parts, axis=1)


def weight_matching(ref: dict[str, np.ndarray], other: dict[str, np.ndarray], layout: Layout,
                    max_sweeps: int = MAX_SWEEPS, seed: int = 0) -> tuple[list[np.ndarray], list[float]]:
    """Permutations bringing ``other`` closest to ``ref`` and the distance after each sweep
    (first entry: before matching). Only the tensors in ``layout`` are compared."""
    rng = np.random.default_rng(seed)
    n_hidden = len(layout.layers) - 1
    perms = [np.arange(layer.out) for layer in layout.layers[:-1]]
    names = [n for layer in layout.layers for n in [layer.weight, layer.bias, *layer.vectors] if n]
    names = [n for n in names if n in ref and n in other]
    ref = {n: np.asarray(ref[n], dtype=np.float64) for n in names}
    other = {n: np.asarray(other[n], dtype=np.float64) for n in names}

    def dist() -> float:
        b = apply_permutation(other, layout, perms)
        return float(np.sqrt(sum(np.sum((ref[n] - b[n]) ** 2) for n in ref)))

    history = [dist()]
    for _ in range(max_sweeps):
        improved = False
        for l in rng.permutation(n_hidden):
            a = _unit_rows(ref, layout, l, [np.arange(len(p)) for p in perms])
            b = _unit_rows(other, layout, l, perms)
            s = a @ b.T
            _, col = linear_sum_assignment(s, maximize=True)
            old = s[np.arange(len(col)), perms[l]].sum()
            new = s[np.arange(len(col)), col].sum()
            if new > old + 1e-12 * max(abs(old), 1.0):
                perms[l] = col
                improved = True
        history.append(dist())
        if not improved:
            break
    return perms, history


def random_permutations(layout: Layout, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.permutation(n) for n in layout.hidden_sizes]


def affordable_snapshots(layout: Layout, sweeps: int = 5) -> int:
    """How many snapshots to align within :data:`WORK_BUDGET` (at least 2)."""
    per = sweeps * sum(float(n) ** 3 for n in layout.hidden_sizes)
    return int(np.clip(WORK_BUDGET / max(per, 1.0), 2, 10**6))


def permutation_report(run: Run, indices: list[int], n_baseline: int = 8,
                       ref: int | None = None) -> dict:
    """Raw and aligned distance of snapshots to snapshot ``ref`` (default: the last one; a
    diverged run's last finite one), and the distance from it to randomly permuted copies
    of itself. ``indices`` are the candidates; for wide layers they are evenly thinned to
    :func:`affordable_snapshots` (first and last kept)."""
    try:
        layout = layout_of(run)
    except NotInferable as e:
        # the panel shows the first clause; the detail (which tensor broke the chain) follows
        return {"raw_to_final": None, "aligned_to_final": None,
                "reason": f"weight matching needs a chain of Linear/Conv layers ({e})"}
    cap = affordable_snapshots(layout)
    if len(indices) > cap:
        indices = [indices[j] for j in np.unique(np.round(np.linspace(0, len(indices) - 1, cap)).astype(int))]
    if len(run) < 2:
        return {"raw_to_final": None, "aligned_to_final": None,
                "reason": "needs at least two snapshots"}
    last = len(run) - 1 if ref is None else int(ref)
    final = run.params(last)
    if not all(np.isfinite(v).all() for v in final.values()):
        return {"raw_to_final": None, "aligned_to_final": None,
                "reason": "the reference snapshot has non-finite weights"}
    raw, aligned, sweeps = [], [], []
    for i in indices:
        p = run.params(int(i))
        if not all(np.isfinite(v).all() for v in p.values()):
            raw.append(None), aligned.append(None), sweeps.append(0)
            continue
        _perms, hist = weight_matching(final, p, layout)
        raw.append(hist[0])
        aligned.append(hist[-1])
        sweeps.append(len(hist) - 1)
    rng = np.random.default_rng(0)
    base = []
    for _ in range(n_baseline):
        q = apply_permutation(final, layout, random_permutations(layout, rng))
        base.append(float(np.sqrt(sum(np.sum((np.asarray(final[n], float) - np.asarray(q[n], float)) ** 2)
                                      for n in run.param_names))))
    return {
        "indices": [int(i) for i in indices],
        "reference": {"index": last, "step": int(run.steps[last])},
        "steps": [int(run.steps[i]) for i in indices],
        "raw_to_final": raw,
        "aligned_to_final": aligned,
        "sweeps": sweeps,
        "baseline_random_permutation": {"mean": float(np.mean(base)), "std": float(np.std(base)),
                                        "n": n_baseline},
        "hidden_sizes": layout.hidden_sizes,
        "layers": [layer.prefix for layer in layout.layers],
    }
