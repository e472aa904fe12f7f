"""Workspace latents: equal to the model's encode, cached sparse per (model, fingerprint, weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sae_synth import segments_for, synthetic_embeddings

from core.errors import InputError
from core.sae.activations import encode_array, latents, reconstruct, sparse_codes
from core.sae.catalog import open_model
from core.training.config import TrainConfig
from core.training.grid import train_grid
from core.workspace.workspace import Workspace


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def trained(tmp_path):
    x, _ = synthetic_embeddings(n=400)
    ws = Workspace.create(tmp_path / "ws", segments_for(400), x, embedder="synthetic", sample_rate=0)
    train_grid(ws, TrainConfig(archs=("topk", "relu"), latents=(20,), ks=(3,), epochs=1), progress=False)
    return ws, x


@pytest.mark.parametrize("name", ["topk-L20-K3", "relu-L20"])
def test_latents_match_encode_and_cache(trained, name):
    ws, x = trained
    sae = open_model(ws, name)
    with torch.no_grad():
        want = sae.encode(torch.from_numpy(x)).numpy()
    got = latents(ws, name)
    assert got.dtype == np.float32 and got.shape == (400, 20)
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(encode_array(sae, x), want, atol=1e-6)
    cache = list((ws.cache_dir / "activations").glob(f"{name}-{ws.fingerprint}-*.npz"))
    assert len(cache) == 1
    idx, val = sparse_codes(ws, name)
    if name.startswith("topk"):
        assert idx.shape == (400, 3)
    mtime = cache[0].stat().st_mtime_ns
    rows = np.array([5, 0, 399])
    np.testing.assert_allclose(latents(ws, name, rows=rows), want[rows], atol=1e-6)
    assert cache[0].stat().st_mtime_ns == mtime  # served from the cache
    np.testing.assert_allclose(
        reconstruct(sae, got), sae(torch.from_numpy(x)).recon.detach().numpy(), atol=1e-5
    )


def test_bad_requests(trained):
    ws, x = trained
    sae = open_model(ws, "topk-L20-K3")
    with pytest.raises(InputError, match=r"\[n, 16\]"):
        encode_array(sae, x[:, :8])
    with pytest.raises(InputError, match="out of range"):
        latents(ws, "topk-L20-K3", rows=np.array([400]))
    # a corrupt cache file is recomputed, not trusted
    latents(ws, "topk-L20-K3")
    cache = next((ws.cache_dir / "activations").glob("topk-L20-K3-*.npz"))
    cache.write_bytes(b"garbage")
    np.testing.assert_allclose(
        latents(ws, "topk-L20-K3", rows=np.array([1])), encode_array(sae, x[1:2]), atol=1e-6
    )


def test_code_rows_are_read_from_the_mapped_cache_and_fall_back_when_it_is_unusable(trained):
    """sparse_code_rows reads the rows from the cached .npz memory-mapped (equal to the loaded
    arrays' rows); a compressed or damaged cache is recomputed by sparse_codes instead."""
    from core.sae import activations

    ws, _ = trained
    idx, val = sparse_codes(ws, "topk-L20-K3")
    rows = np.array([399, 5, 5, 0, 123])
    got_idx, got_val = activations.sparse_code_rows(ws, "topk-L20-K3", rows)
    np.testing.assert_array_equal(got_idx, idx[rows])
    np.testing.assert_array_equal(got_val, val[rows])
    assert not isinstance(got_idx, np.memmap)  # a copy: the map is not kept open by the caller
    (path,) = (ws.cache_dir / "activations").glob("topk-L20-K3-*.npz")
    mapped = activations._mapped_npz(path)
    assert isinstance(mapped["indices"], np.memmap) and mapped["indices"].shape == (400, 3)
    with open(path, "wb") as fh:  # compressed members cannot be mapped
        np.savez_compressed(fh, indices=idx, values=val)
    assert activations._mapped_npz(path) is None
    got_idx, got_val = activations.sparse_code_rows(ws, "topk-L20-K3", rows)
    np.testing.assert_array_equal(got_idx, idx[rows])
    path.write_bytes(b"not a zip")
    got_idx, _ = activations.sparse_code_rows(ws, "topk-L20-K3", rows)  # recomputed, then read
    np.testing.assert_array_equal(got_idx, idx[rows])
