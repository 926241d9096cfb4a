"""The writer process encodes JSON with json's C encoder without importing ``json`` (its
start-up): the metrics lines and safetensors headers must be exactly ``json.dumps``'s."""

from __future__ import annotations

import json
import math

import pytest

from lossview.core.train import _writer_child as child

VALUES = [
    {"step": 0, "loss": 0.1 + 0.2, "lr": 1e-300, "acc": 1.0, "big": 2**70, "neg": -0.0},
    {"step": 7, "nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": True, "no": False},
    {"step": 3, "text": "é \"quoted\" \\ \n tab\t \u2603 \U0001f600", "none": None},
    {"step": 1, "list": [1, 2.5, [3, {"a": "b"}]], "nested": {"x": {"y": []}}, "e": {}},
    {"step": 2, 5: "int key", 1.5: "float key", True: "bool key", None: "none key"},
    ["b", "a", "running_mean"],
    [],
]


@pytest.mark.parametrize("value", VALUES)
def test_the_writers_json_is_json_dumps(value):
    assert child.dumps(value) == json.dumps(value)
    assert child.dumps_compact(value) == json.dumps(value, separators=(",", ":"))


def test_what_json_cannot_encode_is_the_same_error():
    with pytest.raises(TypeError, match="Object of type complex is not JSON serializable"):
        child.dumps({"step": 1, "z": 1j})
    with pytest.raises(TypeError):
        json.dumps({"step": 1, "z": 1j})
