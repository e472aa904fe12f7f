"""core.labels.store: SQLite (WAL) label store, history, concurrency, CSV/JSON export and import."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from core.errors import InputError, NotFoundError
from core.labels.store import LabelConflict, LabelStore


@pytest.fixture()
def store(tmp_path):
    return LabelStore(tmp_path / "labels.sqlite")


def test_save_get_history_and_wal(store, tmp_path):
    a = store.save("topk-L200-K20", 15, "Spanish", "fires on es", "lang; es", 0.9, "ana", now=1.0)
    assert a.version == 1 and a.tags == ("lang", "es")
    b = store.save(
        "topk-L200-K20", 15, "Spanish speech", tags=["lang"], confidence=0.95, author="bo", now=2.0
    )
    assert b.version == 2
    got = store.get("topk-L200-K20", 15)
    assert got.name == "Spanish speech" and got.author == "bo" and got.updated_at == 2.0
    hist = store.history("topk-L200-K20", 15)
    assert [h["name"] for h in hist] == ["Spanish speech", "Spanish"]
    assert hist[1]["author"] == "ana" and hist[1]["tags"] == ["lang", "es"]
    assert store.get("topk-L200-K20", 16) is None
    with sqlite3.connect(tmp_path / "labels.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.delete("topk-L200-K20", 15, author="ana")
    assert store.get("topk-L200-K20", 15) is None
    assert len(store.history("topk-L200-K20", 15)) == 3
    with pytest.raises(NotFoundError):
        store.delete("topk-L200-K20", 15)


def test_validation(store):
    with pytest.raises(InputError, match="name is empty"):
        store.save("m", 1, "  ")
    with pytest.raises(InputError, match="confidence"):
        store.save("m", 1, "x", confidence=1.5)
    with pytest.raises(InputError, match="negative"):
        store.save("m", -1, "x")
    with pytest.raises(InputError, match="out of range"):
        store.save("m", 200, "x", known_models={"m": 200})


def test_optimistic_conflict_keeps_both(store):
    store.save("m", 3, "first", author="a")
    store.save("m", 3, "second", author="b", expected_version=1)
    with pytest.raises(LabelConflict) as exc:
        store.save("m", 3, "stale", author="a", expected_version=1)
    assert exc.value.current.name == "second"
    assert store.get("m", 3).name == "second"
    assert {h["name"] for h in store.history("m", 3)} == {"first", "second", "stale"}


def test_two_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path)
    n = 60
    errors = []

    def writer(author: str) -> None:
        s = LabelStore(path)  # its own connections
        try:
            for i in range(n):
                s.save("m", i % 7, f"{author}-{i}", author=author)
                s.save("m", 100 + i, f"{author}-own-{i}", author=author) if author == "a" else None
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(a,)) for a in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    s = LabelStore(path)
    hist = s.history("m")
    assert len(hist) == 3 * n  # a: 2 per step, b: 1 per step
    names = {h["name"] for h in hist}
    assert all(f"a-{i}" in names and f"b-{i}" in names for i in range(n))
    assert len(s.for_model("m")) == 7 + n
    # version counts every save of a latent exactly once
    assert sum(lab.version for lab in s.for_model("m").values() if lab.latent < 7) == 2 * n


def test_export_import_roundtrip(store, tmp_path):
    store.save("m", 1, "one", "desc, with comma", ["a", "b"], 0.7, "ana")
    store.save("m", 2, 'two "quoted"', "", [], 0.2, "bo")
    csv_text = store.export_csv()
    json_text = store.export_json()
    assert json.loads(json_text)[0]["tags"] == ["a", "b"]
    other = LabelStore(tmp_path / "other.sqlite")
    rep = other.import_text(csv_text, "csv")
    assert rep.imported == 2 and not rep.errors
    assert other.get("m", 1).description == "desc, with comma"
    assert other.get("m", 1).tags == ("a", "b")
    assert other.get("m", 2).name == 'two "quoted"'
    third = LabelStore(tmp_path / "third.sqlite")
    rep = third.import_text(json_text.encode(), "json")
    assert rep.imported == 2 and third.get("m", 1).confidence == 0.7


def test_import_reports_bad_rows_with_line_numbers(store):
    text = (
        "model,latent,name,confidence\n"
        "m,1,good,0.5\n"
        "m,x,bad latent,0.5\n"
        "m,2,,0.5\n"
        "m,3,too many,0.5,extra\n"
        "m,4,bad conf,7\n"
        "m,999,out of range,0.5\n"
        "m,5,fine,\n"
    )
    rep = store.import_text(text, "csv", known_models={"m": 200})
    assert rep.imported == 2
    lines = [n for n, _ in rep.errors]
    assert lines == [3, 4, 5, 6, 7]
    assert "not an integer" in rep.errors[0][1]
    assert "line 3" in rep.summary()
    rep = store.import_text(
        json.dumps([{"model": "m", "latent": 9, "name": "ok"}, 5, {"model": "m"}]), "json"
    )
    assert rep.imported == 1 and [n for n, _ in rep.errors] == [2, 3]


@pytest.mark.parametrize(
    ("text", "fmt", "match"),
    [
        ("", "csv", "empty"),
        ("a,b\n1,2\n", "csv", "lacks column"),
        ('model,latent,name\nm,1,"unterminated\n', "csv", "malformed CSV"),
        ("{not json", "json", "malformed JSON"),
        ('{"a": 1}', "json", "list of label"),
        (b"\xff\xfe\x00bad", "csv", "UTF-8"),
        ("x", "xml", "unknown label file format"),
    ],
)
def test_malformed_files_raise_input_error(store, text, fmt, match):
    with pytest.raises(InputError, match=match):
        store.import_text(text, fmt)
