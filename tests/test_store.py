"""The resumable result store: finished units survive, a torn last line is recomputed, never merged."""

from __future__ import annotations

import json

from robustood.report import Row
from robustood.store import ResultStore, provenance


def _rows(value: float) -> list[Row]:
    return [Row("m", "test", "", None, "accuracy", value)]


def test_units_survive_a_restart(tmp_path):
    path = tmp_path / "s.jsonl"
    store = ResultStore(path)
    store.put("a", _rows(0.5))
    store.put("b", _rows(float("nan")))
    again = ResultStore(path)
    assert len(again) == 2 and "a" in again and again.get("a") == _rows(0.5)
    assert again.get("b")[0].value != again.get("b")[0].value  # NaN stays NaN
    assert again.get("c") is None


def test_a_torn_last_line_is_dropped_and_the_next_unit_starts_a_new_line(tmp_path):
    path = tmp_path / "s.jsonl"
    ResultStore(path).put("a", _rows(0.5))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"unit": "b", "rows": [{"mod')  # a crash mid-write
    store = ResultStore(path)
    assert len(store) == 1 and "b" not in store
    store.put("b", _rows(0.25))
    lines = path.read_text().splitlines()
    assert json.loads(lines[-1])["unit"] == "b"
    assert ResultStore(path).get("b") == _rows(0.25) and len(ResultStore(path)) == 2


def test_a_store_without_a_path_keeps_units_in_memory():
    store = ResultStore(None)
    store.put("a", _rows(1.0))
    assert store.get("a") == _rows(1.0)


def test_provenance_records_what_a_rerun_needs():
    meta = provenance({"models": ["plain"]}, seed=3, device="cpu")
    assert meta["seed"] == 3 and meta["device"] == "cpu" and meta["config"] == {"models": ["plain"]}
    assert meta["versions"]["torch"] and meta["versions"]["adversarial-robustness-toolbox"]
    json.dumps(meta)  # serialisable as it is
