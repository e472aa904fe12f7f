"""`train --pool` as a hostile user runs it: a pool workspace that is missing, the workspace itself,
listed twice, made with another embedder or dimension, without training rows or with rows too
large to train on,
an empty entry. Each is refused with one `error:` line naming the pool workspace and what differs,
and nothing under the data root is written or changed (the trained models stay byte-identical)."""

from __future__ import annotations

import numpy as np
import pytest
from _analysis_synth import build_workspace
from hostile_harness import assert_refused, run_cli, snapshot

from core.workspace.workspace import Workspace

TINY = ("--latents", "8", "--k", "2", "--epochs", "2", "--threads", "1")


def _refused(data_root, pool: str, *needles: str) -> str:
    before = snapshot(data_root)
    out = run_cli("train", "--workspace", "w", *TINY, "--pool", pool)
    return assert_refused(out, *needles, before=before, roots=[data_root], allow_new=False)


@pytest.fixture
def pool_ws(trained_ws, data_root) -> Workspace:
    """'p': a good pool workspace for w (same embedder and dim)."""
    return build_workspace("p", seed=1, n_sae_speakers=8, n_feat_speakers=4, per_speaker=6)


def _variant(base: Workspace, name: str, *, embeddings=None, segments=None, embedder=None) -> Workspace:
    return Workspace.create(
        name,
        base.segments if segments is None else segments,
        np.asarray(base.embeddings) if embeddings is None else embeddings,
        embedder=embedder or base.embedder,
        sample_rate=16000,
    )


def test_a_missing_pool_workspace(data_root, pool_ws):
    line = _refused(data_root, "p,nope", "--pool nope", "does not exist")
    assert "p" not in line.split("--pool nope")[0]  # names the missing one, not the good one


def test_the_workspace_itself_by_name_and_by_path(data_root, pool_ws, trained_ws):
    _refused(data_root, "w", "--pool w", "the workspace being trained (w)")
    _refused(data_root, f"p,{trained_ws}", f"--pool {trained_ws}", "the workspace being trained")


def test_a_pool_workspace_listed_twice(data_root, pool_ws):
    _refused(data_root, "p,p", "--pool p", "already in the pool (as p)", "pool each workspace once")
    _refused(data_root, f"p,{pool_ws.root}", f"--pool {pool_ws.root}", "already in the pool (as p)")


def test_another_embedder(data_root, pool_ws):
    _variant(pool_ws, "other", embedder="mfcc_stats")
    _refused(data_root, "other", "--pool other", "embedded with 'mfcc_stats'", "'synthetic'", "one embedder")


def test_another_dimension(data_root, pool_ws):
    _variant(pool_ws, "narrow", embeddings=np.asarray(pool_ws.embeddings)[:, :16].copy())
    _refused(data_root, "p,narrow", "--pool narrow", "16-d embeddings", "w 24-d", "one dimension")


def test_a_pool_workspace_without_training_rows(data_root, pool_ws):
    seg = pool_ws.segments.assign(split="feature")
    _variant(pool_ws, "nosae", segments=seg)
    _refused(data_root, "nosae", "workspace nosae", "no segments with split 'sae'")


def test_a_pool_workspace_whose_training_rows_overflow_float32(data_root, pool_ws):
    # a workspace accepts rows near 1e38 (finite); squared distances between them would not be
    emb = np.asarray(pool_ws.embeddings).copy()
    first = int(np.flatnonzero(pool_ws.segments["split"].to_numpy() == "sae")[3])
    emb[first, 5] = 3e38
    _variant(pool_ws, "hugepool", embeddings=emb)
    _refused(data_root, "hugepool", "workspace hugepool", "too large to train on", f"row {first}")


@pytest.mark.parametrize("pool", ["p,,", ",", " "])
def test_an_empty_pool_entry(data_root, pool_ws, pool):
    _refused(data_root, pool, f"--pool {pool!r}", "comma-separated workspace names")


def test_a_good_pool_is_accepted_after_the_refusals(data_root, pool_ws):
    out = run_cli("train", "--workspace", "w", *TINY, "--pool", "p")
    assert out.rc == 0 and "trained 1 model(s)" in out.out, out
