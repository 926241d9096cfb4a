"""``RunWriter(..., sync=False)`` (the Recorder's: its writer process fsyncs run.json) writes
the same run.json, complete and in place, without the fsync on the caller's thread."""

from __future__ import annotations

import json

from lossview.core.io.native import RunWriter


def test_an_unsynced_run_json_is_the_same_file(tmp_path):
    spec = {"problem": {"name": "toy"}, "seed": 3, "note": "é"}
    a = RunWriter(tmp_path / "a", spec)
    b = RunWriter(tmp_path / "b", spec, sync=False)
    assert a.spec_synced and not b.spec_synced
    text_a = (tmp_path / "a" / "run.json").read_bytes()
    got = json.loads((tmp_path / "b" / "run.json").read_bytes())
    assert got["status"] == "running" and got["seed"] == 3 and got["note"] == "é"
    got.update(created=a.spec["created"], name=a.spec["name"])
    assert (json.dumps(got, indent=2) + "\n").encode() == text_a
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoints", "metrics.jsonl",
                                                                  "run.json"]  # no temporary left
    b.sync_spec()
    assert b.spec_synced
    for w in (a, b):
        w.close()
