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


def test_first_save_waits_for_a_writer_holding_the_new_database(tmp_path):
    # SQLite answers `PRAGMA journal_mode = WAL` SQLITE_BUSY at once, without its busy handler,
    # while another connection holds a write lock on a database still in rollback mode (how two
    # threads' first saves on a new store raced in CI); the store waits for it instead
    path = tmp_path / "labels.sqlite"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE unrelated (x)")
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.3, lambda: other.execute("ROLLBACK"))
    release.start()
    try:
        saved = LabelStore(path).save("m", 3, "waited", author="ana")
    finally:
        release.join()
        other.close()
    assert saved.version == 1
    assert LabelStore(path).get("m", 3).name == "waited"


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


# -- hostile imports: types and ranges checked per row (issue "Trust", item 9) ---------------
HOSTILE_ROWS = [
    ({"latent": 2**63, "name": "past int64"}, "past the largest latent id"),
    ({"latent": 10**30, "name": "far past int64"}, "past the largest latent id"),
    ({"latent": True, "name": "a bool"}, "latent is not an integer: True"),
    ({"latent": 1, "name": {"a": 1}}, "name is not text: a dict"),
    ({"latent": 1, "name": ["x"]}, "name is not text: a list"),
    ({"latent": -1, "name": "negative"}, "latent -1 is negative"),
    ({"latent": 16, "name": "past d_sae"}, "latent 16 out of range for m (0..15)"),
    ({"latent": 3, "name": "nan", "confidence": float("nan")}, "confidence is not a number: nan"),
    ({"latent": 3, "name": "inf", "confidence": float("inf")}, "confidence inf is outside 0..1"),
    ({"latent": 3, "name": "bool conf", "confidence": False}, "confidence is not a number: False"),
    ({"latent": 3, "name": "x" * 10_000}, "name longer than 200 characters (10,000)"),
    ({"latent": 3, "name": "t", "description": "d" * 100_000}, "description longer than 5000"),
    ({"latent": 3, "name": "t", "tags": [{"a": 1}]}, "a tag is not text: a dict"),
    ({"latent": 3, "name": "t", "tags": ["t" * 101]}, "a tag longer than 100 characters"),
    ({"latent": 3, "name": "t", "tags": {"a": 1}}, "tags are not a list"),
    ({"latent": 3, "name": "t", "author": ["x"]}, "author is not text: a list"),
    ({"latent": 3.5, "name": "fraction"}, "latent is not an integer: 3.5"),
    ({"latent": [[[[1]]]], "name": "deep"}, "latent is not an integer: a list"),
    ({"latent": None, "name": "missing"}, "latent is missing"),
    ({"model": {"x": 1}, "latent": 3, "name": "t"}, "model is not text: a dict"),
    ({"model": "m" * 300, "latent": 3, "name": "t"}, "model longer than 200 characters"),
    ({"model": "other", "latent": 3, "name": "t"}, "model 'other' is not in this workspace"),
]


def test_json_import_rejects_each_bad_row_and_keeps_the_good_ones(store):
    good = [
        {"model": "m", "latent": 4, "name": "Spanish", "confidence": 0.25, "tags": ["a", "b"]},
        {"model": "m", "latent": 5.0, "name": "integral float", "author": "ana"},
    ]
    rows = [{"model": "m", **row} for row, _ in HOSTILE_ROWS] + good
    rep = store.import_text(json.dumps(rows), "json", known_models={"m": 16}, author="importer")
    assert rep.imported == 2
    assert [n for n, _ in rep.errors] == list(range(1, len(HOSTILE_ROWS) + 1))
    for (line, why), (_, expected) in zip(rep.errors, HOSTILE_ROWS, strict=True):
        assert expected in why, (line, why)
        assert len(why) < 200  # a 100,000-character value is not echoed back
    labels = store.for_model("m")
    assert sorted(labels) == [4, 5]
    assert labels[4].tags == ("a", "b") and labels[4].confidence == 0.25 and labels[4].author == "importer"
    assert labels[5].name == "integral float" and labels[5].author == "ana"
    assert store.all() == list(labels.values())  # nothing under another model or a huge id


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        ("True", "latent is not an integer: 'True'"),
        ("1e3", "latent is not an integer: '1e3'"),
        ("1_000", "latent is not an integer: '1_000'"),
        ("\u0663", "latent is not an integer"),  # an Arabic-Indic digit: int() would take it
        ("99999999999999999999", "past the largest latent id"),
        ("9" * 5000, "past the largest latent id"),  # past Python's int() digit limit too
        ("-3", "latent '-3' is negative"),
    ],
)
def test_csv_latent_cells_are_decimal_integers(store, cell, why):
    rep = store.import_text(f"model,latent,name\nm,{cell},x\nm,7,ok\n", "csv")
    assert rep.imported == 1 and rep.errors[0][0] == 2 and why in rep.errors[0][1]
    assert list(store.for_model("m")) == [7]


@pytest.mark.parametrize(("cell", "why"), [("nan", "not a number: 'nan'"), ("inf", "inf is outside 0..1")])
def test_csv_confidence_must_be_a_number_in_range(store, cell, why):
    rep = store.import_text(f"model,latent,name,confidence\nm,1,x,{cell}\n", "csv")
    assert rep.imported == 0 and why in rep.errors[0][1]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"labels": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        ("[" + "1" * 5000 + "]", "unreadable JSON"),
        ('"just a string"', "JSON must be a list of label objects, got 'just a string'"),
    ],
)
def test_unreadable_json_is_one_error_and_imports_nothing(store, text, match):
    with pytest.raises(InputError, match=match):
        store.import_text(text, "json", where="labels.json")
    assert store.all() == []


def test_json_items_that_are_not_objects_are_rejected_by_item(store):
    rep = store.import_text(json.dumps([[1, 2], "name", {"model": "m", "latent": 0, "name": "ok"}]), "json")
    assert rep.imported == 1
    assert rep.errors == [(1, "not a label object (a list)"), (2, "not a label object ('name')")]


def test_a_csv_header_of_junk_is_summarised(store):
    header = ",".join(f"col{i}" for i in range(5000))
    with pytest.raises(InputError, match=r"lacks column\(s\) model, latent, name") as err:
        store.import_text(header + "\n", "csv")
    assert len(str(err.value)) < 400


def test_save_validates_like_import(store):
    import numpy as np

    assert store.save("m", np.int64(3), "numpy id").latent == 3
    for bad, match in [(True, "not an integer"), (2**64, "past the largest"), ("3.0", "not an integer")]:
        with pytest.raises(InputError, match=match):
            store.save("m", bad, "x")
    with pytest.raises(InputError, match="name is not text"):
        store.save("m", 1, {"name": "x"})
    assert [lab.latent for lab in store.all()] == [3]


def test_a_corrupt_store_is_one_error_and_stays_as_it_was(tmp_path):
    from core.atomic import WriteError

    path = tmp_path / "labels.sqlite"
    junk = b"not a database " * 1000
    path.write_bytes(junk)
    store = LabelStore(path)
    with pytest.raises(InputError, match=f"cannot read {path}: file is not a database"):
        store.for_model("m")
    with pytest.raises(WriteError, match=f"cannot write {path}: file is not a database"):
        store.save("m", 1, "x")
    with pytest.raises(WriteError, match="cannot write"):
        store.import_text("model,latent,name\nm,1,x\n", "csv")
    assert path.read_bytes() == junk


def test_a_store_that_does_not_exist_is_created_on_first_use(tmp_path):
    path = tmp_path / "new" / "labels.sqlite"
    store = LabelStore(path)
    assert not path.exists()  # constructing touches nothing
    assert store.save("m", 1, "x").version == 1
    assert LabelStore(path).get("m", 1).name == "x"


# -- links, foreign and hand-edited databases, fields named twice --------------------------------------
@pytest.mark.parametrize("name", ["labels.sqlite", "labels.sqlite-wal", "labels.sqlite-journal"])
def test_a_link_at_the_database_or_a_sidecar_is_never_followed(tmp_path, name):
    decoy = tmp_path / "decoy"
    decoy.write_bytes(b"")
    store = LabelStore(tmp_path / "labels.sqlite")
    (tmp_path / name).symlink_to(decoy)
    for call in (lambda: store.save("m", 1, "x"), store.all):
        with pytest.raises(InputError, match=rf"{name}: a link \(to {decoy}\), never followed"):
            call()
    assert decoy.read_bytes() == b""


def test_another_tools_database_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "labels.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE label_history (id INTEGER, note TEXT)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(InputError, match="table label_history lacks column"):
        LabelStore(path).save("m", 1, "x")
    assert path.read_bytes() == before


def test_a_hand_edited_row_is_named(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.save("m", 3, "x")
    con = sqlite3.connect(store.path)
    con.execute("UPDATE labels SET version = 'two'")
    con.commit()
    con.close()
    with pytest.raises(
        InputError, match=r"a damaged label \(model 'm', latent 3\): version 'two' is not a number"
    ):
        store.get("m", 3)


def test_a_field_named_twice_is_refused(store):
    with pytest.raises(InputError, match="upload: the CSV header names column 'name' twice"):
        store.import_text("model,latent,name,Name\nm,1,a,b\n", "csv")
    report = store.import_text('[{"model": "m", "latent": 1, "name": "a", "name": "b"}]', "json")
    assert report.errors == [(1, "key 'name' appears twice")] and store.all() == []
    nested = store.import_text('[{"model": "m", "latent": 1, "name": {"x": 1, "x": 2}}]', "json")
    assert nested.errors == [(1, "name is not text: a dict")]
