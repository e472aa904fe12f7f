"""Hostile review of the dashboard at 10M segments and the compiled TopK step.

The server's cache files (the segment table's Arrow copy, its order and counts files, the nearest
index, the cached codes) edited in place, swapped for a link to a file outside the workspace, left
without their description or changed under a running server's map: each is either refused (one
warning, the right rows from the parquet) or still read as the file the server opened. The
compiled TopK step on odd shapes, NaN weights and concurrent callers, against the autograd path.
"""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pandas as pd
import pytest
import torch
from dashboard_ws import small_workspace
from sae_synth import segments_for, synthetic_embeddings

from core import atomic
from core.dashboard import nearest_index, playback, segments_table
from core.errors import InputError
from core.sae import SAEConfig, cpu_topk, cpu_topk_step, create_sae
from core.sae.stack import SAEStack
from core.workspace.workspace import Workspace


def _small(root, n=60, speaker_prefix="spk") -> Workspace:
    x = np.random.default_rng(0).standard_normal((n, 4)).astype(np.float32)
    return small_workspace(root, x, speaker=[f"{speaker_prefix}{i % 7}" for i in range(n)])


def _served(ws) -> Workspace:
    """A server's view of `ws`: opened afresh, its table loaded as pages/common.py does."""
    fresh = Workspace.open(ws.root)
    segments_table.load(fresh)
    return fresh


def _parquet(ws) -> pd.DataFrame:
    return pd.read_parquet(ws.root / "segments.parquet")


# -- the segment table's copy -------------------------------------------------------------------
def test_an_arrow_copy_edited_in_place_is_refused_and_dashboard_cache_rewrites_it(tmp_path, capsys):
    ws = _small(tmp_path / "ws")
    path = segments_table.ensure(ws)
    data = path.read_bytes()
    at = data.find(b"spk3")
    path.write_bytes(data[:at] + b"spk9" + data[at + 4 :])  # same size: the footer still opens
    served = _served(ws)
    assert served.segments.iloc[3]["speaker"] == "spk3"  # the parquet's row, not the edited one
    assert "is not the file written" in segments_table.problem(served)
    assert capsys.readouterr().err.count("segment table copy not used") == 1
    assert segments_table.find(served, "s3") is None  # the page's own lookup, not the copy's
    assert playback.segment_position(served, "s3") == 3
    segments_table.ensure(ws)  # dashboard-cache again: written anew, not kept because present
    again = _served(ws)
    assert segments_table.problem(again) is None and segments_table.find(again, "s3") == 3
    assert again.segments.iloc[3]["speaker"] == "spk3"


@pytest.mark.parametrize("damage", ["reversed", "out_of_range", "truncated"])
def test_a_changed_order_file_never_names_a_wrong_row_nor_raises(tmp_path, damage):
    ws = _small(tmp_path / "ws")
    order = segments_table.order_path(segments_table.ensure(ws))
    rows = np.load(order)
    if damage == "reversed":  # sorted the wrong way: the binary search would call s3 unlisted
        np.save(order, rows[::-1].copy())
    elif damage == "out_of_range":  # rows past the table: an IndexError on the page before
        np.save(order, np.full_like(rows, 10**6))
    else:
        order.write_bytes(order.read_bytes()[:-16])
    served = _served(ws)
    assert segments_table.find(served, "s3") is None
    assert [playback.segment_position(served, f"s{i}") for i in (0, 3, 59)] == [0, 3, 59]
    pd.testing.assert_frame_equal(served.segments, _parquet(ws))


def test_an_order_file_rewritten_under_a_servers_map_is_not_trusted(tmp_path):
    ws = _small(tmp_path / "ws")
    order = segments_table.order_path(segments_table.ensure(ws))
    served = _served(ws)
    assert segments_table.find(served, "s3") == 3
    with open(order, "r+b") as fh:  # in place (not a rename): the map sees the new bytes
        fh.seek(-8 * 60, os.SEEK_END)
        fh.write(np.full(60, 10**6, dtype=np.int64).tobytes())
    assert segments_table.find(served, "s3") is None  # no IndexError, no row out of the table
    assert playback.segment_position(served, "s3") == 3


def test_edited_value_counts_are_not_shown(tmp_path):
    ws = _small(tmp_path / "ws")
    counts = segments_table.counts_path(segments_table.ensure(ws))
    served = _served(ws)
    assert segments_table.value_counts(served, "speaker").loc["spk0"] == 9  # rows 0, 7, ..., 56
    frame = pd.read_parquet(counts)
    frame["count"] = 999
    frame.to_parquet(counts, index=False)
    edited_later = segments_table.value_counts(_served(ws), "speaker")
    assert edited_later is None  # refused with the copy: the page counts the parquet itself
    fresh = Workspace.open(ws.root)
    segments_table.load(fresh)
    assert "counts.parquet is not the file written" in segments_table.problem(fresh)


def test_a_copy_swapped_for_a_link_outside_the_workspace_is_not_read(tmp_path):
    ws = _small(tmp_path / "ws")
    path = segments_table.ensure(ws)
    # a well-formed copy of the same rows and columns, other values, outside the workspace
    import pyarrow as pa

    evil = tmp_path / "evil.arrow"
    table = pa.Table.from_pandas(_parquet(ws).assign(speaker="EVIL"), preserve_index=False)
    with pa.OSFile(str(evil), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    path.unlink()
    path.symlink_to(evil)
    manifest = segments_table.manifest_path(path)  # its description made to fit the evil file too
    desc = json.loads(manifest.read_text())
    desc["arrow"] = {"size": evil.stat().st_size, "mtime_ns": evil.stat().st_mtime_ns}
    manifest.write_text(json.dumps(desc))
    served = _served(ws)
    assert set(served.segments["speaker"]) != {"EVIL"}
    assert "is a link" in segments_table.problem(served)
    segments_table.ensure(ws)  # the link is replaced by the workspace's own file, not written through
    assert not path.is_symlink() and evil.read_bytes()[:6] == b"ARROW1"
    assert set(pa.ipc.open_file(str(evil)).read_all().column("speaker").to_pylist()) == {"EVIL"}
    assert segments_table.problem(_served(ws)) is None


def test_a_copy_without_its_description_is_not_used_and_gets_one(tmp_path):
    """A crash between the copy's writes (the description is written last), or a copy an older
    dashboard-cache wrote: refused until dashboard-cache writes the description."""
    ws = _small(tmp_path / "ws")
    path = segments_table.ensure(ws)
    segments_table.manifest_path(path).unlink()
    served = _served(ws)
    assert "json is missing" in segments_table.problem(served)
    pd.testing.assert_frame_equal(served.segments, _parquet(ws))
    segments_table.ensure(ws)
    assert segments_table.manifest_path(path).is_file()
    assert segments_table.find(_served(ws), "s59") == 59


def test_a_reingested_table_with_the_old_copy_renamed_to_the_new_digest_is_refused(tmp_path):
    """Rows reordered by a re-import: the new parquet's digest names a file; an old copy put there
    by hand (with its own description) describes another table."""
    ws = _small(tmp_path / "ws")
    old = segments_table.ensure(ws)
    seg = _parquet(ws).iloc[::-1].reset_index(drop=True)
    x = np.asarray(ws.embeddings)[::-1].copy()
    new_ws = Workspace.create(tmp_path / "ws2", seg, x, embedder="x", sample_rate=0)
    new_path = segments_table.table_path(new_ws)
    new_path.parent.mkdir(parents=True, exist_ok=True)
    for a, b in zip(segments_table._files(old), segments_table._files(new_path), strict=True):
        b.write_bytes(a.read_bytes())
    served = _served(new_ws)
    assert "names another segment table" in segments_table.problem(served)
    assert playback.segment_position(served, "s0") == 59


# -- the nearest index --------------------------------------------------------------------------
SETTINGS = nearest_index.IndexSettings(min_rows=0, lists=4, train_rows=16)


def _indexed(tmp_path, n=300):
    x = np.random.default_rng(1).standard_normal((n, 8)).astype(np.float32)
    ws = Workspace.create(tmp_path / "nn", segments_for(n), x, embedder="x", sample_rate=0)
    nearest_index.build_index(ws, SETTINGS)
    return ws, x


def test_an_index_swapped_for_a_link_is_not_mapped(tmp_path, capsys):
    pytest.importorskip("faiss")
    ws, x = _indexed(tmp_path)
    path = nearest_index.index_path(ws, SETTINGS)
    outside = tmp_path / "outside.faiss"
    outside.write_bytes(path.read_bytes())  # the same bytes: the JSON's hash still fits
    path.unlink()
    path.symlink_to(outside)
    served = Workspace.open(ws.root)
    assert nearest_index.load_index(served, SETTINGS) is None
    assert "is a link" in capsys.readouterr().err
    rows, _ = nearest_index.nearest_rows(served, x[5], 3, settings=SETTINGS)  # brute force, exact
    assert rows[0] == 5
    assert nearest_index.ensure_index(Workspace.open(ws.root), SETTINGS).built
    assert not path.is_symlink() and outside.is_file()


def test_a_rebuild_while_a_server_maps_the_index_leaves_the_servers_index_as_it_was(tmp_path):
    pytest.importorskip("faiss")
    ws, x = _indexed(tmp_path)
    served = Workspace.open(ws.root)
    before = nearest_index.nearest_rows(served, x[7], 5, settings=SETTINGS)
    path = nearest_index.index_path(ws, SETTINGS)
    # what dashboard-cache's rebuild does to the file: a new one renamed over it (here: garbage)
    atomic.write_bytes(path, b"\0" * path.stat().st_size)
    after = nearest_index.nearest_rows(served, x[7], 5, settings=SETTINGS)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_allclose(after[1], before[1])
    assert nearest_index.load_index(Workspace.open(ws.root), SETTINGS) is None  # a new server refuses it


# -- the cached codes, read in place ------------------------------------------------------------
@pytest.fixture
def coded(tmp_path):
    from core.training.config import TrainConfig
    from core.training.grid import train_grid

    x, _ = synthetic_embeddings(n=200)
    ws = Workspace.create(tmp_path / "codes", segments_for(200), x, embedder="synthetic", sample_rate=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_grid(ws, TrainConfig(latents=(12,), ks=(2,), epochs=1), progress=False)
    finally:
        torch.set_num_threads(threads)
    return ws


def test_code_rows_out_of_range_are_refused_not_wrapped(coded):
    from core.sae import activations

    activations.sparse_codes(coded, "topk-L12-K2")
    for rows in ([-1], [200], [0, 5, 10**9]):
        with pytest.raises(InputError, match=r"row index out of range 0\.\.199"):
            activations.sparse_code_rows(coded, "topk-L12-K2", np.array(rows))
    with pytest.raises(InputError, match="row numbers"):
        activations.sparse_code_rows(coded, "topk-L12-K2", np.array([0.5]))


def test_cached_codes_swapped_for_a_link_are_not_read(coded, tmp_path):
    from core.sae import activations

    idx, val = activations.sparse_codes(coded, "topk-L12-K2")
    (path,) = (coded.cache_dir / "activations").glob("topk-L12-K2-*.npz")
    outside = tmp_path / "outside.npz"
    np.savez(outside, indices=np.zeros_like(idx), values=np.full_like(val, 7.0))
    path.unlink()
    path.symlink_to(outside)
    got_idx, got_val = activations.sparse_code_rows(coded, "topk-L12-K2", np.array([3, 4]))
    np.testing.assert_array_equal(got_idx, idx[[3, 4]])
    np.testing.assert_array_equal(got_val, val[[3, 4]])
    assert not path.is_symlink()  # recomputed into the workspace's own file
    with np.load(outside) as f:
        assert float(f["values"].max()) == 7.0  # the outside file untouched


def test_cached_codes_of_another_dtype_are_not_used(coded):
    from core.sae import activations

    idx, val = activations.sparse_codes(coded, "topk-L12-K2")
    (path,) = (coded.cache_dir / "activations").glob("topk-L12-K2-*.npz")
    with open(path, "wb") as fh:
        np.savez(fh, indices=idx.astype(np.float64) + 0.5, values=val)  # in range, not latent ids
    got_idx, _ = activations.sparse_code_rows(coded, "topk-L12-K2", np.array([1, 2]))
    assert got_idx.dtype == np.int32
    np.testing.assert_array_equal(got_idx, idx[[1, 2]])


# -- the compiled TopK step ---------------------------------------------------------------------
needs_numba = pytest.mark.skipif(not cpu_topk.available(), reason="numba not installed")


def _stack(d_sae, ks, d_in, seed=0):
    torch.manual_seed(seed)
    stack = SAEStack.from_saes(
        [create_sae(SAEConfig("topk", d_in=d_in, d_sae=d_sae, k=k, seed=seed + i)) for i, k in enumerate(ks)]
    )
    with torch.no_grad():
        stack.b_enc.normal_(0, 0.1)
        stack.b_dec.normal_(0, 0.3)
    return stack


def _autograd(stack, x, dead):
    for p in stack.parameters():
        p.grad = None
    out = stack.losses(x, 1.3, dead=dead)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in stack.named_parameters()}
    for p in stack.parameters():
        p.grad = None
    return out, grads


def _fused(stack, x, dead):
    out = cpu_topk_step.losses_and_grads(stack, x, 1.3, dead)
    return out, {n: p.grad.clone() for n, p in stack.named_parameters()}


@needs_numba
@pytest.mark.parametrize(
    "rows,d_in,d_sae,ks",
    [(1, 7, 40, [39, 3]), (1, 192, 24, [23]), (2, 33, 40, [39, 1]), (97, 5, 30, [29, 2])],
)
def test_the_compiled_step_on_odd_shapes_matches_autograd(rows, d_in, d_sae, ks):
    stack = _stack(d_sae, ks, d_in)
    x = torch.randn(rows, d_in, generator=torch.Generator().manual_seed(2)) * 2
    dead = torch.rand(len(ks), d_sae, generator=torch.Generator().manual_seed(3)) < 0.5
    ref, ref_grads = _autograd(stack, x, dead)
    got, grads = _fused(stack, x, dead)
    torch.testing.assert_close(got.mse, ref.mse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.aux, ref.aux, atol=1e-5, rtol=1e-5)
    assert torch.equal(got.fired, ref.fired)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, atol=1e-4, rtol=1e-4, msg=name)


@needs_numba
def test_a_huge_value_in_a_batch_matches_autograd():
    stack = _stack(30, [5, 4], 10)
    x = torch.randn(50, 10, generator=torch.Generator().manual_seed(4))
    x[3, 2] = 1e18  # finite: its square (1e36) still fits float32
    dead = torch.zeros(2, 30, dtype=torch.bool)
    ref, _ = _autograd(stack, x, dead)
    got, _ = _fused(stack, x, dead)
    torch.testing.assert_close(got.mse, ref.mse, rtol=1e-4, atol=0)


@needs_numba
@pytest.mark.parametrize("tensor", ["W_enc", "W_dec"])
def test_nan_weights_stay_in_their_model_and_make_it_lost(tensor):
    stack = _stack(30, [5, 4], 10)
    with torch.no_grad():
        if tensor == "W_enc":
            stack.W_enc[:, 0, 3] = float("nan")
        else:
            stack.W_dec[0, 3] = float("nan")
    x = torch.randn(50, 10, generator=torch.Generator().manual_seed(5))
    dead = torch.rand(2, 30, generator=torch.Generator().manual_seed(6)) < 0.3
    ref, ref_grads = _autograd(stack, x, dead)
    got, grads = _fused(stack, x, dead)
    assert torch.isnan(got.mse[0]) == torch.isnan(ref.mse[0])
    torch.testing.assert_close(got.mse[1], ref.mse[1])
    for name, g in ref_grads.items():  # the NaN model's mate: the autograd gradients, finite
        axis = stack.model_axis(name)
        torch.testing.assert_close(grads[name].select(axis, 1), g.select(axis, 1), atol=1e-5, rtol=1e-4)
    stack.train_step(x, 1.0, 1e-3)
    bad = stack.nonfinite_tensors()
    assert "W_enc" in bad[0] and bad[1] == []


@needs_numba
def test_a_model_whose_weights_turn_nan_in_the_compiled_step_is_reported_lost_not_saved(
    tmp_path, monkeypatch
):
    from core.sae.catalog import list_models
    from core.training.config import TrainConfig
    from core.training.grid import train_grid

    x, _ = synthetic_embeddings(n=200)
    ws = Workspace.create(tmp_path / "w", segments_for(200), x, embedder="synthetic", sample_rate=0)
    real = cpu_topk_step.losses_and_grads
    calls = []

    def poisoned(stack, xb, scale, dead=None):  # the K=3 model's decoder row turns NaN at step 3
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                stack.W_dec[[i for i, k in enumerate(stack.k_list) if k == 3], 0] = float("nan")
        return real(stack, xb, scale, dead)

    monkeypatch.setattr(cpu_topk_step, "losses_and_grads", poisoned)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(InputError, match=r"1 model\(s\) diverged.*topk-L8-K3"):
            train_grid(ws, TrainConfig(latents=(8,), ks=(2, 3), epochs=1), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert len(calls) >= 3
    assert [m.name for m in list_models(ws)] == ["topk-L8-K2"]


@needs_numba
def test_two_python_threads_stepping_their_own_stacks_get_the_sequential_results():
    x = torch.randn(512, 24, generator=torch.Generator().manual_seed(7))
    stacks = [_stack(64, [8, 4], 24, seed=1) for _ in range(3)]
    want = _fused(stacks[0], x, None)[1]
    got = {}

    def step(i):
        for _ in range(10):
            cpu_topk_step.losses_and_grads(stacks[i], x, 1.3)
        got[i] = {n: p.grad.clone() for n, p in stacks[i].named_parameters()}

    workers = [threading.Thread(target=step, args=(i,)) for i in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for i in (1, 2):
        for name, g in want.items():
            assert torch.equal(got[i][name], g), name


# -- the page -----------------------------------------------------------------------------------
def test_the_page_over_a_corrupt_copy_shows_one_warning_not_a_traceback(trained_ws, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    ws = Workspace.open(trained_ws)
    path = segments_table.ensure(ws)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the copy, size kept
    path.write_bytes(bytes(data))
    monkeypatch.setenv("VOXSAE_WORKSPACE", trained_ws.name)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    shown = [w.value for w in at.warning if "segment table copy not used" in w.value]
    assert len(shown) == 1 and "is not the file written" in shown[0], [w.value for w in at.warning]
