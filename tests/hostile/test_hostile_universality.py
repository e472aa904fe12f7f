"""`universality` (and `ingest --embedder mfcc-stats`) as a hostile user would call them: model
lists that are not two models, models and workspaces that do not exist, workspaces that share
no segments, a corrupt embeddings file, a full or read-only disk.

Each refusal: exit 2, one `error:` line naming the input and what is wrong, no traceback, every
file byte-identical and nothing left behind. Two inputs that look odd are allowed and tested as
such: the same model twice (it matches itself: correlation 1), and a model workspace of another
dimension (another embedder: decoder cosine is skipped and said).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bad_audio import write_voice
from hostile_harness import assert_refused, fill_disk, read_only, run_cli, snapshot

from core.workspace.workspace import Workspace

L8, L16 = "topk-L8-K2", "topk-L16-K2"  # the trained workspace's models (conftest.MODELS)


def refused(data_root, models, *, needles, workspace="w", model_workspace=None, roots=None, allow_new=False):
    """`universality --workspace WORKSPACE --models MODELS [--model-workspace ...]` is refused
    cleanly, naming `needles`; every file under `roots` (default: the data root) as it was."""
    roots = roots or [data_root]
    argv = ["--workspace", workspace, "--models", models]
    if model_workspace is not None:
        argv += ["--model-workspace", model_workspace]
    before = snapshot(*roots)
    out = run_cli("universality", *argv)
    return assert_refused(out, *needles, before=before, roots=roots, allow_new=allow_new)


def twin(data_root, trained_ws, name: str, *, segments=None, embeddings=None) -> Path:
    """Another workspace beside `w` holding `w`'s models: `w`'s segments and embeddings unless given."""
    seg = pd.read_parquet(trained_ws / "segments.parquet") if segments is None else segments
    emb = np.load(trained_ws / "embeddings.npy") if embeddings is None else embeddings
    ws = Workspace.create(data_root / name, seg, emb, embedder="synthetic", sample_rate=16000)
    shutil.copytree(trained_ws / "models", ws.models_dir)
    return ws.root


# -- the model list ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("models", "needles"),
    [
        (L8, ["--models 'topk-L8-K2'", "need exactly two models", "got one model"]),
        (f"{L8},{L16},{L8}", ["need exactly two models", "got 3 models"]),
        (f"{L8},", ["--models 'topk-L8-K2,'", "empty model name"]),
        (",", ["empty model name"]),
        (f"{L8},topk-L99-K2", ["workspace w", "no model 'topk-L99-K2'", f"{L8}, {L16}"]),
        (f"topk-L99-K2,{L8}", ["workspace w", "no model 'topk-L99-K2'"]),
    ],
    ids=["one model", "three models", "trailing comma", "only a comma", "unknown second", "unknown first"],
)
def test_a_model_list_that_is_not_two_known_models(trained_ws, data_root, models, needles):
    refused(data_root, models, needles=needles)


def test_an_unknown_workspace_or_model_workspace(trained_ws, data_root, metadata_csv):
    refused(data_root, f"{L8},{L16}", workspace="nowhere", needles=["nowhere", "does not exist"])
    refused(
        data_root,
        f"{L8},{L16}",
        model_workspace="elsewhere",
        needles=["elsewhere", "does not exist"],
    )
    # a file is not a workspace
    refused(
        data_root,
        f"{L8},{L16}",
        model_workspace=str(metadata_csv),
        needles=[str(metadata_csv), "no workspace.json"],
        roots=[data_root, metadata_csv],
    )


def test_a_model_the_model_workspace_lacks(trained_ws, data_root):
    other = twin(data_root, trained_ws, "w2")
    shutil.rmtree(other / "models" / L16)
    refused(
        data_root,
        f"{L8},{L16}",
        model_workspace="w2",
        needles=["workspace w2", f"no model '{L16}'", f"(available: {L8})"],
    )


# -- workspaces that do not hold the same segments ------------------------------------------------
def _renamed(seg: pd.DataFrame, keep: int) -> pd.DataFrame:
    """The segment table with every id but the first `keep` changed."""
    return seg.assign(
        segment_id=[sid if i < keep else f"other-{i}" for i, sid in enumerate(seg["segment_id"])]
    )


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        (
            lambda seg: _renamed(seg, keep=0),
            ["workspaces w (640 segments) and w2 (640 segments) share 0 segment id(s)", "at least 30"],
        ),
        (
            lambda seg: _renamed(seg, keep=12),
            ["share 12 segment id(s)", "needs at least 30 segments seen by both models"],
        ),
        (  # the same ids, other stretches of the calls
            lambda seg: seg.assign(start_s=seg["start_s"] + 2.5),
            ["share 0 segment id(s)", "640 id(s) that name another stretch of audio"],
        ),
    ],
    ids=["no id shared", "12 ids shared", "the same ids for other audio"],
)
def test_workspaces_that_do_not_hold_the_same_segments(trained_ws, data_root, change, needles):
    twin(data_root, trained_ws, "w2", segments=change(pd.read_parquet(trained_ws / "segments.parquet")))
    refused(data_root, f"{L8},{L16}", model_workspace="w2", needles=needles)


def test_a_model_workspace_whose_embeddings_file_holds_nan(trained_ws, data_root):
    other = twin(data_root, trained_ws, "w2")
    emb = np.load(other / "embeddings.npy")
    emb[3, 5] = np.nan
    np.save(other / "embeddings.npy", emb)  # corrupted behind the workspace's back
    before = set(snapshot(data_root))
    refused(
        data_root,
        f"{L8},{L16}",
        model_workspace="w2",
        needles=["workspace w2", "embedding row 3 contains NaN or inf"],
        allow_new=True,
    )
    # the one new file: the sound workspace's cached activations (correct, and reused next time)
    new = sorted(set(snapshot(data_root)) - before)
    assert [Path(p).relative_to(data_root).parts[:3] for p in new] == [("w", "cache", "activations")]


# -- odd but allowed --------------------------------------------------------------------------------
def test_the_same_model_twice_matches_itself(trained_ws, data_root):
    out = run_cli("universality", "--workspace", "w", "--models", f"{L8},{L8}")
    assert out.rc == 0 and not out.error_lines, out
    assert "mean max correlation 1.000" in out.out
    rows = [
        line.split() for line in out.out.splitlines() if line.startswith("    ") and line.split()[0].isdigit()
    ]
    assert rows and all(r[0] == r[1] and r[2] == "1.000" for r in rows), out.out
    assert (trained_ws / "analyses" / "universality" / f"{L8}~{L8}.json").is_file()


def test_a_model_workspace_of_another_dimension_is_compared_without_decoder_cosine(trained_ws, data_root):
    from _analysis_synth import train_models

    seg = pd.read_parquet(trained_ws / "segments.parquet")
    emb = np.load(trained_ws / "embeddings.npy")
    proj = np.random.default_rng(0).normal(size=(emb.shape[1], 16)).astype(np.float32)
    other = Workspace.create(data_root / "w16", seg, emb @ proj, embedder="other-embedder", sample_rate=16000)
    train_models(other, shapes=((8, 2),), steps=100)
    out = run_cli("universality", "--workspace", "w", "--models", f"{L8},{L8}", "--model-workspace", "w16")
    assert out.rc == 0 and not out.error_lines, out
    assert "over 640 segments" in out.out
    assert "decoder cosine skipped" in out.out and "other-embedder embeddings (16-d" in out.out
    assert (trained_ws / "analyses" / "universality" / f"{L8}~{L8}@w16.json").is_file()


# -- the machine says no ----------------------------------------------------------------------------
def _on_disk(disk, trained_ws, monkeypatch):
    dest = shutil.copytree(trained_ws, disk / "w")
    monkeypatch.setenv("VOXSAE_DATA", str(disk))
    return dest


def test_a_full_disk(disk, trained_ws, monkeypatch):
    _on_disk(disk, trained_ws, monkeypatch)
    fill_disk(disk)
    before = snapshot(disk)
    out = run_cli("universality", "--workspace", "w", "--models", f"{L8},{L16}")
    assert_refused(
        out, "cannot write", str(disk / "w"), "No space left on device", before=before, roots=[disk]
    )


def test_a_read_only_workspace(disk, trained_ws, monkeypatch):
    _on_disk(disk, trained_ws, monkeypatch)
    before = snapshot(disk)
    with read_only(disk):
        out = run_cli("universality", "--workspace", "w", "--models", f"{L8},{L16}")
    assert_refused(out, "cannot write", "Read-only file system", before=before, roots=[disk], allow_new=False)


# -- the second embedder ----------------------------------------------------------------------------
def test_mfcc_stats_takes_no_checkpoint(data_root, tmp_path):
    calls = write_voice(tmp_path / "calls" / "a.wav", seed=1).parent
    weights = tmp_path / "weights.pt"
    weights.write_bytes(b"\0" * 16)
    before = snapshot(data_root, calls, weights)
    out = run_cli("ingest", calls, "--workspace", "m", "--embedder", "mfcc-stats", "--checkpoint", weights)
    assert_refused(
        out,
        "embedder 'mfcc-stats' has no weights and takes no --checkpoint",
        str(weights),
        before=before,
        roots=[data_root, calls, weights],
    )


# -- report --across and demo-corpus --audio-from ------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["report", "--workspace", "w", "--across", "nope"], ["nope"]),
        (["report", "--workspace", "w", "--across", "w"], ["--across w:", "is already the workspace itself"]),
        (
            ["demo-corpus", "--workspace", "d2", "--audio-from", "w", "--scale", "0.05"],
            ["--audio-from w", "was not built by demo-corpus"],
        ),
        (["demo-corpus", "--workspace", "d2", "--audio-from", "nope"], ["nope"]),
        (
            ["demo-corpus", "--workspace", "d2", "--embedder", "titanet"],
            ["--embedder 'titanet'", "mfcc-stats"],
        ),
    ],
    ids=[
        "across missing",
        "across itself",
        "audio from a non-demo",
        "audio from missing",
        "demo with titanet",
    ],
)
def test_second_embedder_flags_are_refused_before_any_work(data_root, trained_ws, argv, needles):
    before = snapshot(data_root)
    out = run_cli(*argv)
    assert_refused(out, *needles, before=before, roots=[data_root])
    assert not (data_root / "d2").exists()
