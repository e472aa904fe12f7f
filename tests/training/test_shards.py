"""Training streamed from shards (core.training.shards): with one buffer holding every shard it
trains byte for byte the models of the in-memory path (and shares their key); with a small buffer
every row is seen exactly once per epoch, no more than two buffers are ever materialised, the
order is a pure function of (seed, epoch), a resumed epoch (also mid-buffer) continues it, and a
run killed mid-epoch resumes to byte-identical weights; bad rows are refused as in memory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sae_synth import synthetic_embeddings, windowed_workspace

from core.errors import InputError
from core.sae.catalog import list_models
from core.training.config import TrainConfig
from core.training.grid import grid_specs, train_grid
from core.training.shards import Piece, RowSource, StreamedBatches
from core.training.trainer import TrainingInterrupted
from core.workspace.workspace import Workspace

N = 600
GRID = dict(latents=(12, 16), ks=(2, 3), epochs=2, lr=3e-3, batch_size=32)
ALL_IN_ONE = dict(stream_above_bytes=0, shard_rows=50, buffer_shards=100)
SMALL_BUFFER = dict(stream_above_bytes=0, shard_rows=40, buffer_shards=2)


def _ws(tmp_path, name, windows=True):
    """N segments, 2 of 3 in the sae split (sparse positions in embeddings.npy); segment i has
    1 + i % 3 windows."""
    return windowed_workspace(tmp_path / name, synthetic_embeddings(n=N, seed=5)[0], 3, 2, windows)


def _files(ws) -> dict[str, tuple[bytes, bytes]]:
    return {
        m.name: ((m.path / "sae_weights.safetensors").read_bytes(), (m.path / "metrics.json").read_bytes())
        for m in list_models(ws)
    }


@pytest.mark.parametrize("rows", ["segments", "both"])
def test_one_buffer_of_every_shard_trains_the_in_memory_models_byte_for_byte(tmp_path, rows):
    memory, streamed = _ws(tmp_path, "memory"), _ws(tmp_path, "streamed")
    train_grid(memory, TrainConfig(rows=rows, **GRID), progress=False)
    cfg = TrainConfig(rows=rows, **GRID, **ALL_IN_ONE)
    assert train_grid(streamed, cfg, progress=False).trained == [
        "topk-L12-K2",
        "topk-L12-K3",
        "topk-L16-K2",
        "topk-L16-K3",
    ]
    a, b = _files(memory), _files(streamed)
    assert len(a) == 4 and a == b
    info = json.loads((list_models(streamed)[0].path / "cfg.json").read_text())["voxsae"]
    assert info["streamed"] == {"shard_rows": 50, "buffer_shards": 100}
    # the same order is the same key: the in-memory models are up to date for the streamed config
    assert train_grid(memory, cfg, progress=False).trained == []


def test_a_small_buffer_changes_the_order_and_so_the_key(tmp_path):
    ws = _ws(tmp_path, "w")
    base = grid_specs(ws, TrainConfig(**GRID))[0].key
    assert grid_specs(ws, TrainConfig(**GRID, **ALL_IN_ONE))[0].key == base
    small = grid_specs(ws, TrainConfig(**GRID, **SMALL_BUFFER))[0].key
    other = grid_specs(ws, TrainConfig(**GRID, **{**SMALL_BUFFER, "buffer_shards": 3}))[0].key
    assert len({base, small, other}) == 3
    # the budget alone decides: rows under it are not streamed, whatever the shards
    assert grid_specs(ws, TrainConfig(**GRID, **{**SMALL_BUFFER, "stream_above_bytes": 10**9}))[0].key == base


def _source(tmp_path, n_file=2000):
    """A memory-mapped file of n_file rows whose column 0 is the row number; the source takes
    every third row but one (sparse positions, as a split leaves them)."""
    x = np.random.default_rng(0).normal(size=(n_file, 8)).astype(np.float32)
    x[:, 0] = np.arange(n_file)
    np.save(tmp_path / "rows.npy", x)
    arr = np.load(tmp_path / "rows.npy", mmap_mode="r")
    index = np.flatnonzero(np.arange(n_file) % 3 != 1)
    return RowSource([Piece(arr, index)]), index


def _epoch(batches, epoch, first_step=0) -> np.ndarray:
    return np.concatenate([b[:, 0].numpy() for b in batches(epoch, first_step)]).astype(np.int64)


def test_a_small_buffer_sees_every_row_once_per_epoch_and_holds_two_buffers_at_most(tmp_path):
    source, index = _source(tmp_path)
    assert len(source._fds) == 1  # read with pread, not through the map's pages
    batches = StreamedBatches(source, batch_size=32, seed=3, shard_rows=40, buffer_shards=2)
    assert batches.n_shards == 34 and not batches.single_buffer
    orders = []
    for epoch in range(3):
        seen = _epoch(batches, epoch)
        assert np.array_equal(np.sort(seen), index)  # every row exactly once
        assert [len(b) for b in batches(epoch, 0)] == [32] * 41 + [len(index) - 32 * 41]
        orders.append(seen)
        assert 0 < batches.peak_rows <= 2 * 2 * 40 and batches.resident_rows == 0
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    # shuffled within a buffer only: the first rows of an epoch are those of its first buffer's shards
    first = batches.layout(0)[0]
    n_first = sum(min(40, len(index) - 40 * s) for s in first)
    assert set(np.searchsorted(index, orders[0][:n_first]) // 40) == set(first) and len(first) == 2
    # a pure function of (seed, epoch): another iterator over the same rows gives the same order
    again = StreamedBatches(source, batch_size=32, seed=3, shard_rows=40, buffer_shards=2)
    assert np.array_equal(_epoch(again, 1), orders[1])
    other_seed = StreamedBatches(source, batch_size=32, seed=4, shard_rows=40, buffer_shards=2)
    assert not np.array_equal(_epoch(other_seed, 1), orders[1])
    # resumed at any step (1, 2: mid-buffer, step 2's batch straddling buffers 0 and 1) it continues
    for step in (1, 2, 5, 40, 41):
        assert np.array_equal(_epoch(batches, 1, step), orders[1][32 * step :])
    assert list(batches(1, 42)) == []


def test_the_row_source_reads_and_gathers_the_mapped_rows(tmp_path):
    source, index = _source(tmp_path)
    assert np.array_equal(source.read(5, 700)[:, 0], index[5:700])
    at = np.array([900, 3, 3, 1200, 0])
    assert np.array_equal(source.gather(at)[:, 0], index[at])
    in_memory = RowSource([Piece(np.asarray(source.pieces[0].array), index)])
    assert not in_memory._fds and np.array_equal(in_memory.read(5, 700), source.read(5, 700))


def test_a_streamed_run_killed_mid_epoch_resumes_to_byte_identical_models(tmp_path):
    cfg = TrainConfig(**GRID, **SMALL_BUFFER)
    whole, killed = _ws(tmp_path, "whole"), _ws(tmp_path, "killed")
    train_grid(whole, cfg, progress=False)
    with pytest.raises(TrainingInterrupted):  # 360 training rows, 12 steps an epoch: step 6 of epoch 2
        train_grid(killed, cfg, progress=False, stop_after_steps=18)
    assert len(train_grid(killed, cfg, progress=False).trained) == 4
    a, b = _files(whole), _files(killed)
    assert len(a) == 4 and a == b
    # and they differ from the in-memory order's models (the comparison can fail)
    memory = _ws(tmp_path, "memory")
    train_grid(memory, TrainConfig(**GRID), progress=False)
    assert all(_files(memory)[name][0] != a[name][0] for name in a)


@pytest.mark.parametrize(
    ("file", "row", "value", "rows", "message"),
    [
        (
            "embeddings",
            4,
            np.nan,
            "segments",
            r"1 embedding row\(s\) contain NaN or inf \(first: row 4, segment s000004\)",
        ),
        (
            "embeddings",
            301,
            1e38,
            "both",
            r"1 embedding row\(s\) are too large to train on \(first: row 301, segment s000301",
        ),
        (
            "embeddings",
            7,
            np.inf,
            "windows",
            r"1 embedding row\(s\) contain NaN or inf \(first: row 7, segment s000007\)",
        ),
        (
            "windows",
            4,
            np.inf,
            "both",
            r"1 window row\(s\) contain NaN or inf \(first: window 4 of .*windows.npy, segment row 2,",
        ),
    ],
)
def test_a_bad_row_is_refused_as_in_memory(tmp_path, file, row, value, rows, message):
    ws = _ws(tmp_path, "bad")
    bad = np.load(ws.root / f"{file}.npy").copy()
    bad[row, 3] = value  # written behind the workspace's back (it refuses such rows itself)
    np.save(ws.root / f"{file}.npy", bad)
    errors = []
    for cfg in (TrainConfig(rows=rows, **GRID), TrainConfig(rows=rows, **GRID, **SMALL_BUFFER)):
        with pytest.raises(InputError, match=message) as exc:
            train_grid(Workspace.open(ws.root), cfg, progress=False)
        errors.append(str(exc.value))
    assert errors[0] == errors[1] and list_models(ws) == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("shard_rows", 0, r"shard_rows 0: must be an integer >= 1"),
        ("buffer_shards", 1.5, r"buffer_shards 1.5: must be an integer >= 1"),
        ("stream_above_bytes", -1, r"stream_above_bytes -1: must be an integer >= 0"),
    ],
)
def test_stream_settings_out_of_range_are_refused(field, value, message):
    with pytest.raises(InputError, match=message):
        TrainConfig(**{field: value})
