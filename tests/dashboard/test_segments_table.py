"""The server's segment table: the memory-mapped Arrow copy of segments.parquet."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.dashboard import segments_table
from core.errors import NotFoundError
from core.workspace.workspace import Workspace


def _ws(tmp_path, make_workspace, n=50):
    x = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    return make_workspace(tmp_path / "ws", x, speaker=[f"spk{i % 7}" for i in range(n)], gender="f")


def test_the_copy_reads_as_the_parquet_does(tmp_path, make_workspace):
    ws = _ws(tmp_path, make_workspace)
    path = segments_table.ensure(ws)
    assert path.name.startswith("segments-") and path.suffix == ".arrow"
    assert segments_table.ensure(ws) == path  # present: not written again
    fresh = Workspace.open(ws.root)
    got = segments_table.load(fresh)
    assert fresh.segments is got  # what every reader of ws.segments then gets
    pd.testing.assert_frame_equal(got, pd.read_parquet(ws.root / "segments.parquet"))
    assert got.iloc[[3, 17]]["speaker"].tolist() == ["spk3", "spk3"]
    import pyarrow as pa

    table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    assert all(table.column(c).num_chunks == 1 for c in table.column_names)  # takes read only rows


def test_a_damaged_or_foreign_copy_is_said_and_the_parquet_read(tmp_path, make_workspace, capsys):
    ws = _ws(tmp_path, make_workspace)
    path = segments_table.ensure(ws)
    path.write_bytes(path.read_bytes()[:200])  # truncated
    got = segments_table.load(Workspace.open(ws.root))
    pd.testing.assert_frame_equal(got, pd.read_parquet(ws.root / "segments.parquet"))
    assert "segment table copy not used" in capsys.readouterr().err
    other = _ws(tmp_path / "other", make_workspace, n=20)  # a copy of 20 rows under this name
    path.write_bytes(segments_table.ensure(other).read_bytes())
    assert len(segments_table.load(Workspace.open(ws.root))) == 50
    assert "is not the file written" in capsys.readouterr().err  # its description says so first


def test_no_copy_reads_the_parquet(tmp_path, make_workspace):
    ws = _ws(tmp_path, make_workspace)
    got = segments_table.load(Workspace.open(ws.root))
    assert len(got) == 50 and not list(ws.cache_dir.glob("segments-*"))


def test_a_segment_id_is_found_by_binary_search_over_the_copy(tmp_path, make_workspace):
    from core.dashboard import playback

    ws = _ws(tmp_path, make_workspace)
    assert segments_table.find(ws, "s3") is None  # not read from the copy: the caller's own lookup
    segments_table.ensure(ws)
    fresh = Workspace.open(ws.root)
    segments_table.load(fresh)
    ids = fresh.segments["segment_id"].tolist()
    assert [segments_table.find(fresh, i) for i in ids] == list(range(50))
    assert segments_table.find(fresh, "s5x") == -1 and segments_table.find(fresh, "") == -1
    assert segments_table.find(fresh, "zz") == -1 and segments_table.find(fresh, "a") == -1
    assert playback.segment_position(fresh, "s42") == 42
    with pytest.raises(NotFoundError, match="no segment 'nope'"):
        playback.segment_position(fresh, "nope")


def test_stored_value_counts_are_the_counts_of_the_column(tmp_path, make_workspace):
    from core.dashboard import browse

    n = 60
    x = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    lang = np.array(["es", "en", " ", None] * 15, dtype=object)
    ws = make_workspace(tmp_path / "ws", x, speaker=[f"spk{i % 9}" for i in range(n)], language=lang, f0=1.5)
    plain = Workspace.open(ws.root)
    assert segments_table.value_counts(plain, "speaker") is None  # not read from the copy
    segments_table.ensure(ws)
    fresh = Workspace.open(ws.root)
    segments_table.load(fresh)
    for col in ("speaker", "language"):
        want = fresh.segments[col].astype("string").value_counts(dropna=True)
        got = segments_table.value_counts(fresh, col)
        assert dict(got.items()) == dict(want.items())
    assert segments_table.value_counts(fresh, "f0") is None  # numeric: a continuous attribute
    assert segments_table.value_counts(fresh, "segment_id") is None
    assert browse.association_attributes(fresh) == browse.association_attributes(plain)
    rows = np.arange(0, n, 3)
    sub = fresh.segments.iloc[rows]
    pd.testing.assert_frame_equal(
        browse._breakdown(fresh, sub), browse._breakdown(plain, plain.segments.iloc[rows])
    )


def test_the_overview_summary_from_stored_counts_is_the_workspace_summary(tmp_path, make_workspace):
    from core.dashboard.overview import workspace_summary

    n = 40
    x = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    ws = make_workspace(
        tmp_path / "ws",
        x,
        speaker=[["", "a", "b", None][i % 4] for i in range(n)],
        language=[["es", "en", None, "es"][i % 4] for i in range(n)],
        many=[f"v{i}" for i in range(n)],
        hours=["x"] * n,  # named like a summary field
        f0=np.linspace(80, 200, n),
    )
    segments_table.ensure(ws)
    fresh = Workspace.open(ws.root)
    segments_table.load(fresh)
    assert workspace_summary(fresh) == Workspace.open(ws.root).summary()
    assert workspace_summary(Workspace.open(ws.root)) == ws.summary()  # no copy read: the same call


def test_the_order_and_counts_files_are_hashed_once_per_content(tmp_path, make_workspace, monkeypatch):
    import os
    import time

    from core import filehash

    monkeypatch.setattr(filehash, "RACY_NS", 0)  # the copy's files count as settled
    ws = _ws(tmp_path, make_workspace)
    path = segments_table.ensure(ws)
    assert segments_table.problem(first := Workspace.open(ws.root)) is None
    segments_table.load(first)  # hashed and remembered
    hashed = []
    real = filehash.file_sha256
    monkeypatch.setattr(filehash, "file_sha256", lambda p: hashed.append(os.path.basename(p)) or real(p))
    again = Workspace.open(ws.root)  # a new server
    segments_table.load(again)
    assert hashed == [] and segments_table.find(again, "s7") == 7
    order = segments_table.order_path(path)
    st = os.stat(order)
    time.sleep(0.03)
    rows = np.load(order)
    rows[[1, 2]] = rows[[2, 1]]  # two rows swapped: same size
    order.write_bytes(order.read_bytes()[:128] + rows.tobytes())
    os.utime(order, ns=(st.st_atime_ns, st.st_mtime_ns))  # the old mtime put back
    edited = Workspace.open(ws.root)
    segments_table.load(edited)
    assert hashed == [order.name] and segments_table.find(edited, "s7") is None
    assert "is not the file written (its bytes changed)" in segments_table.problem(edited)
