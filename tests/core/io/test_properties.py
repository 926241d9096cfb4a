"""Property-based tests: natural name order, and readers that never crash on bad bytes."""

import contextlib
import random
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossview.core.errors import LossviewError
from lossview.core.io import open_run
from lossview.core.io.filescan import steps_from_names
from lossview.core.io.naming import natural_key

DATA = Path(__file__).resolve().parents[2] / "data"
FAST = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

prefixes = st.sampled_from(["model_", "ckpt-", "weights", "run3_iter", "net.v2-", "snap"])
suffixes = st.sampled_from([".pt", ".safetensors", ".npz", "_final.pth", ""])


@FAST
@given(st.sets(st.integers(0, 10 ** 7), min_size=1, max_size=30), prefixes, suffixes,
       st.randoms(use_true_random=False))
def test_natural_order_is_numeric_order(numbers, prefix, suffix, rnd):
    names = [f"{prefix}{n}{suffix}" for n in numbers]
    rnd.shuffle(names)
    ordered = sorted(names, key=natural_key)
    assert ordered == [f"{prefix}{n}{suffix}" for n in sorted(numbers)]


@FAST
@given(st.sets(st.integers(0, 10 ** 6), min_size=1, max_size=20), prefixes)
def test_steps_from_names_recover_the_numbers(numbers, prefix):
    files = [Path(f"{prefix}{n}.pt") for n in numbers]
    steps, _, warnings = steps_from_names(files)
    # "run3_iter12": the step word wins over the 3 of the run name
    assert steps == list(numbers) and warnings == []


@FAST
@given(st.sets(st.integers(0, 10 ** 5), min_size=2, max_size=8), st.randoms(use_true_random=False))
def test_a_folder_of_npz_opens_in_numeric_order(numbers, rnd):
    numbers = list(numbers)
    rnd.shuffle(numbers)
    with tempfile.TemporaryDirectory() as d:
        for n in numbers:  # the value of each snapshot is its number
            np.savez(Path(d) / f"w{n}.npz", a=np.full(2, n, np.float32))
        run = open_run(d)
        assert run.steps.tolist() == sorted(numbers)
        assert [float(run.vector(i)[0]) for i in range(len(run))] == sorted(numbers)


LIGHTNING = DATA / "lightning" / "lightning_logs" / "version_0" / "checkpoints"
#: Per kind: two good files and a third that the test damages.
TRIPLES = {
    ".pt": [DATA / "torch_bare" / f"model_{n}.pt" for n in (1, 2, 10)],
    ".safetensors": [DATA / "safetensors_dir" / f"weights_step{n}.safetensors" for n in (10, 20, 30)],
    ".npz": [DATA / "npz_dir" / f"snap_{n}.npz" for n in (5, 10, 15)],
    ".ckpt": [LIGHTNING / f"epoch={e}-step={2 * e + 2}.ckpt" for e in (0, 1, 2)],
    ".tar": [DATA / "torch_general" / f"epoch_{n}.tar" for n in (1, 2, 3)],
    "hf": [DATA / "hf_trainer" / f"checkpoint-{n}" / "model.safetensors" for n in (2, 4, 6)],
}


def _damaged(data: st.DataObject, raw: bytes) -> bytes:
    how = data.draw(st.sampled_from(["truncate", "flip", "random", "splice"]))
    if how == "truncate":
        return raw[: data.draw(st.integers(0, len(raw) - 1))]
    if how == "flip":
        b = bytearray(raw)
        for i in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=8)):
            b[i] ^= 0xFF
        return bytes(b)
    if how == "random":
        return data.draw(st.binary(max_size=4096))
    cut = data.draw(st.integers(0, len(raw)))
    return raw[:cut] + data.draw(st.binary(max_size=64)) + raw[cut:]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.sampled_from(sorted(TRIPLES)))
def test_damaged_bytes_never_crash(data, kind):
    """A damaged file alone: a run or a LossviewError. Beside two good files: every file
    is either loaded or named in a warning, and nothing else is raised."""
    *good, victim = TRIPLES[kind]
    bad = _damaged(data, victim.read_bytes())
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        if kind == "hf":  # the Trainer's own layout: checkpoint-N/model.safetensors
            files = [d / "mixed" / f.parent.name / f.name for f in TRIPLES[kind]]
            alone = d / "alone" / victim.parent.name / victim.name
        else:
            files = [d / "mixed" / f.name for f in TRIPLES[kind]]
            alone = d / "alone" / victim.name
        for f in [*files, alone]:
            f.parent.mkdir(parents=True, exist_ok=True)
        alone.write_bytes(bad)
        for src, dst in zip(good, files):
            dst.write_bytes(src.read_bytes())
        files[-1].write_bytes(bad)
        try:
            run = open_run(d / "alone")
            for i in range(len(run)):  # flipped bytes inside the data are just other values
                with contextlib.suppress(LossviewError):
                    run.vector(i)
        except LossviewError as e:
            assert "\n" not in str(e)  # noqa: PT017 - an error may come, or not: either is fine
        try:
            run = open_run(d / "mixed")
        except LossviewError as e:  # e.g. a flipped byte in a name made a 1-1-1 split
            assert "\n" not in str(e)  # noqa: PT017 - an error may come, or not: either is fine
            return
        loaded = {s.source for s in run.snapshots}
        for f in files:
            label = f.parent.name if kind == "hf" else f.name
            assert f in loaded or any(label in w for w in run.warnings), (label, run.warnings)


def test_shuffled_listing_gives_the_same_run(tmp_path):
    rnd = random.Random(0)
    numbers = list(range(0, 2000, 37))
    rnd.shuffle(numbers)
    for n in numbers:
        np.savez(tmp_path / f"epoch_{n}.npz", a=np.full(1, n, np.float32))
    run = open_run(tmp_path)
    assert run.steps.tolist() == sorted(numbers)
    assert [s.epoch for s in run.snapshots] == [float(n) for n in sorted(numbers)]
