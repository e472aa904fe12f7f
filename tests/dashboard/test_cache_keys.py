"""core.dashboard.cache_keys: what the dashboard's caches are keyed on changes exactly when the
cached thing does (workspace content, model weights, stored analyses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.dashboard import cache_keys
from core.dashboard.browse import build_index
from core.errors import NotFoundError
from core.sae import SAEConfig, create_sae
from core.sae.catalog import get_model
from core.sae.checkpoint import save_sae

N, D_IN = 50, 8


@pytest.fixture()
def ws(tmp_path, make_workspace):
    return make_workspace(tmp_path / "ws", np.random.default_rng(0).standard_normal((N, D_IN)))


def test_workspace_key_is_its_folder_fingerprint_and_segment_table(ws):
    from core.analysis.store import segments_digest
    from core.workspace.workspace import Workspace

    key = cache_keys.workspace_key(str(ws.root))
    assert (
        key
        == f"{ws.root}@{ws.fingerprint}-{segments_digest(ws)}"
        == f"{ws.root}@{cache_keys.content_key(ws)}"
    )
    # only the segment table's `source` changes: the fingerprint stays, the key does not
    seg = ws.segments.assign(source="other.wav")
    moved = Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder="x", sample_rate=0)
    assert moved.fingerprint == ws.fingerprint
    assert cache_keys.workspace_key(str(ws.root)) not in (key, "")
    with pytest.raises(NotFoundError):
        cache_keys.workspace_key(str(ws.root.parent / "nope"))


def test_index_key_follows_the_weights_and_the_build(ws):
    sae = create_sae(SAEConfig(architecture="topk", d_in=D_IN, d_sae=6, k=2))
    save_sae(sae, ws.models_dir / "m")
    version = get_model(ws, "m").version
    assert cache_keys.index_key(ws, "m") == (version, False)
    build_index(ws, "m")
    assert cache_keys.index_key(ws, "m") == (version, True)
    with torch.no_grad():
        sae.W_dec.add_(1.0)  # retrained: other weights
    save_sae(sae, ws.models_dir / "m")
    retrained = cache_keys.index_key(ws, "m")
    assert retrained[0] != version and retrained == (get_model(ws, "m").version, False)


def test_analyses_key_follows_the_stored_bytes_and_the_models(ws):
    empty = cache_keys.analyses_key(ws, "grid")
    folder = ws.analyses_dir / "grid"
    folder.mkdir(parents=True)
    (folder / "a.parquet").write_bytes(b"one")
    first = cache_keys.analyses_key(ws, "grid", "*.parquet")
    assert first != empty
    (folder / "notes.txt").write_bytes(b"ignored")
    assert cache_keys.analyses_key(ws, "grid", "*.parquet") == first
    (folder / "a.parquet").write_bytes(b"two")
    second = cache_keys.analyses_key(ws, "grid", "*.parquet")
    assert second not in (empty, first)
    (folder / "b.parquet").write_bytes(b"")
    third = cache_keys.analyses_key(ws, "grid", "*.parquet")
    assert third not in (first, second)
    sae = create_sae(SAEConfig(architecture="topk", d_in=D_IN, d_sae=6, k=2))
    save_sae(sae, ws.models_dir / "m")
    trained = cache_keys.analyses_key(ws, "grid", "*.parquet")
    assert trained != third
    with torch.no_grad():
        sae.W_dec.add_(1.0)  # retrained: the stored results are stale, their bytes unchanged
    save_sae(sae, ws.models_dir / "m")
    assert cache_keys.analyses_key(ws, "grid", "*.parquet") not in (third, trained)
