"""Git Re-Basin weight matching (docs/science.md section 6): a planted permutation is recovered
exactly, the function is unchanged, the distance never increases over sweeps."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from lossview.core.analysis.permutation import (
    NotInferable,
    affordable_snapshots,
    apply_permutation,
    infer_layout,
    permutation_report,
    random_permutations,
    weight_matching,
)
from lossview.core.io import RunWriter, open_run
from lossview.core.io.memory import run_from_arrays


def _mlp(seed):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                               torch.nn.ReLU(), torch.nn.Linear(64, 5)).double()


def _np(sd):
    return {k: v.detach().numpy().copy() for k, v in sd.items()}


def _shapes(sd):
    return {k: v.shape for k, v in sd.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_planted_permutation_preserves_function_and_is_recovered_exactly():
    net = _mlp(0)
    a = _np(net.state_dict())
    layout = infer_layout(_shapes(a))
    assert layout.hidden_sizes == [64, 64]
    b = apply_permutation(a, layout, random_permutations(layout, np.random.default_rng(1)))
    other = copy.deepcopy(net)
    other.load_state_dict({k: torch.from_numpy(v) for k, v in b.items()})
    x = torch.randn(32, 20, dtype=torch.float64)
    assert (net(x) - other(x)).abs().max().item() < 1e-12  # docs/science.md: 5.6e-16
    perms, hist = weight_matching(a, b, layout)
    assert hist[0] / np.sqrt(sum((v**2).sum() for v in a.values())) > 1.0  # raw: far apart
    assert hist[-1] == 0.0  # exact recovery
    aligned = apply_permutation(b, layout, perms)
    for k in a:
        np.testing.assert_array_equal(aligned[k], a[k])


def test_distance_never_increases_over_sweeps_between_independent_nets():
    a, b = _np(_mlp(0).state_dict()), _np(_mlp(1).state_dict())
    layout = infer_layout(_shapes(a))
    for seed in range(3):
        _, hist = weight_matching(a, b, layout, seed=seed)
        assert len(hist) >= 3
        assert all(h1 <= h0 + 1e-12 for h0, h1 in itertools.pairwise(hist))
        assert hist[-1] < 0.9 * hist[0]  # docs/science.md: 1.432 -> 1.157 relative


def test_conv_batchnorm_flatten_chain():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 6, 3), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(6 * 4 * 4, 10)).double()
    for m in net:
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    net.eval()
    sd = _np(net.state_dict())
    shapes = _shapes(sd)
    layout = infer_layout(shapes, [k for k in sd if k not in shapes])
    assert layout.flatten == [1, 16]
    assert layout.layers[0].vectors == ["1.weight", "1.bias", "1.running_mean", "1.running_var"]
    b = apply_permutation(sd, layout, random_permutations(layout, np.random.default_rng(2)))
    other = copy.deepcopy(net)
    other.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()})
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    assert (net(x) - other(x)).abs().max().item() < 1e-12
    _, hist = weight_matching({k: sd[k] for k in shapes}, {k: b[k] for k in shapes}, layout)
    assert hist[0] > 1.0 and hist[-1] == 0.0


@pytest.mark.parametrize(("shapes", "why"), [
    ({"w": (10,)}, "not a Linear"),
    ({"fc.weight": (4, 3), "fc.bias": (4,)}, "no hidden layer"),
    ({"a.weight": (4, 3), "b.weight": (5, 7)}, "non-sequential"),
    ({"a.weight": (4, 3), "b.weight": (4, 4), "c.weight": (4, 7), "d.weight": (2, 4)}, "non-sequential"),
    ({"a.weight": (4, 3), "attn.in_proj_weight": (12, 4), "b.weight": (2, 4)}, "not a Linear"),
])
def test_architectures_it_cannot_infer_are_refused_with_a_reason(shapes, why):
    with pytest.raises(NotInferable, match=why):
        infer_layout(shapes)


def test_report_on_a_run_with_a_relabelled_final_snapshot(tmp_path):
    net = _mlp(3)
    a = {k: v.astype(np.float32) for k, v in _np(net.state_dict()).items()}
    layout = infer_layout(_shapes(a))
    rng = np.random.default_rng(4)
    first = {k: v + rng.normal(scale=0.01, size=v.shape).astype(np.float32) for k, v in a.items()}
    final = apply_permutation(a, layout, random_permutations(layout, rng))
    with RunWriter(tmp_path / "r") as w:
        w.snapshot(0, first)
        w.snapshot(10, a)
        w.snapshot(20, final)
    rep = permutation_report(open_run(tmp_path / "r"), [0, 1, 2])
    assert rep["raw_to_final"][2] == 0.0 and rep["aligned_to_final"][2] == 0.0
    assert rep["aligned_to_final"][1] == pytest.approx(0.0, abs=1e-5)  # same net, relabelled
    noise = np.sqrt(sum(v.size for v in a.values())) * 0.01
    assert rep["aligned_to_final"][0] == pytest.approx(noise, rel=0.05)
    assert rep["raw_to_final"][0] > 10 * rep["aligned_to_final"][0]
    assert rep["baseline_random_permutation"]["mean"] == pytest.approx(rep["raw_to_final"][1], rel=0.2)
    flat = permutation_report(run_from_arrays(np.zeros((3, 4))), [0, 1, 2])
    assert flat["aligned_to_final"] is None and flat["reason"]


def test_wide_layers_thin_the_aligned_snapshots_but_keep_first_and_last():
    narrow = infer_layout({"a.weight": (64, 10), "b.weight": (5, 64)})
    wide = infer_layout({"a.weight": (4096, 10), "b.weight": (5, 4096)})
    assert affordable_snapshots(narrow) > 50
    assert affordable_snapshots(wide) == 2


def test_alphabetical_safetensors_order_is_rechained_and_norms_matched_by_name():
    # a native run stores tensors sorted by name: bn1, bn2, fc1, fc2, out
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.bn1 = torch.nn.Linear(12, 8), torch.nn.BatchNorm1d(8)
            self.fc2, self.bn2 = torch.nn.Linear(8, 8, bias=False), torch.nn.BatchNorm1d(8)
            self.out = torch.nn.Linear(8, 3)

        def forward(self, x):
            x = torch.relu(self.bn1(self.fc1(x)))
            return self.out(torch.relu(self.bn2(self.fc2(x))))

    net = Net().double()
    for bn in (net.bn1, net.bn2):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.normal_()
    net.eval()
    sd = _np(net.state_dict())
    shapes = dict(sorted(_shapes(sd).items()))
    layout = infer_layout(shapes, sorted(k for k in sd if k not in shapes))
    assert [l.prefix for l in layout.layers] == ["fc1", "fc2", "out"]
    assert layout.layers[0].vectors[:2] == ["bn1.weight", "bn1.bias"]
    assert layout.layers[1].vectors[:2] == ["bn2.weight", "bn2.bias"]
    b = apply_permutation(sd, layout, random_permutations(layout, np.random.default_rng(5)))
    other = copy.deepcopy(net)
    other.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in b.items()})
    x = torch.randn(6, 12, dtype=torch.float64)
    assert (net(x) - other(x)).abs().max().item() < 1e-12
    _, hist = weight_matching({k: sd[k] for k in shapes}, {k: b[k] for k in shapes}, layout)
    assert hist[0] > 0.5 and hist[-1] == 0.0
