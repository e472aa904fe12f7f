"""No stale analysis (the Trust issue, item 1): train and analyse a workspace, then
`import-embeddings` changed content into the same workspace and rerun `identify`, `analyze` and
`dashboard-cache` WITHOUT --force. Every cached result (the feature split, identification, grid,
splitting, steering, suggestions, the browse index, the activations, the UMAP map) must then
equal a fresh computation on a new workspace holding the same content and the same models.

The changes: the rows permuted (CSV and embeddings together), one label column changed (same
embeddings), one row's embedding changed (same CSV); and two the workspace fingerprint does not
see (a changed `source`, a renamed column), which the segment table's digest keys.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hostile_harness import run_cli

# the workspace tests/hostile/conftest.py trains (`_analysed_template`) and its models
WORKSPACE = "w"
MODELS = ("topk-L8-K2", "topk-L16-K2")
FEATURE = ("language", "es", ["en"])
_, LARGE = MODELS
CHANGES = ("permuted", "label", "row")


@contextlib.contextmanager
def _voxsae_data(root: Path):
    old = os.environ.get("VOXSAE_DATA")
    os.environ["VOXSAE_DATA"] = str(root)
    try:
        yield root
    finally:
        os.environ["VOXSAE_DATA"] = old or ""


def _changed_content(template: Path, change: str) -> tuple[pd.DataFrame, np.ndarray]:
    seg = pd.read_parquet(template / "segments.parquet")
    emb = np.load(template / "embeddings.npy")
    feature_es = np.flatnonzero((seg["split"] == "feature") & (seg["language"] == "es"))
    if change == "permuted":
        perm = np.random.default_rng(7).permutation(len(seg))
        return seg.iloc[perm].reset_index(drop=True), emb[perm]
    if change == "label":  # a third of the Spanish feature speakers relabelled English
        relabel = seg["speaker"].isin(seg["speaker"].iloc[feature_es].unique()[::3])
        return seg.assign(language=seg["language"].where(~relabel, "en")), emb
    emb = emb.copy()  # one Spanish feature row moved onto the English centroid
    en = (seg["split"] == "feature") & (seg["language"] == "en")
    emb[feature_es[0]] = emb[en.to_numpy()].mean(axis=0)
    return seg, emb


def _import(root: Path, name: str, seg: pd.DataFrame, emb: np.ndarray) -> None:
    seg.to_csv(root / "meta.csv", index=False)
    np.save(root / "emb.npy", emb)
    out = run_cli("import-embeddings", root / "emb.npy", "--workspace", name, "--metadata", root / "meta.csv")
    assert out.rc == 0, out


def _analyse(name: str) -> dict:
    """Run the commands without --force; what every cache then answers, and identify's output."""
    from core.analysis.datasets import load_feature_dataset
    from core.analysis.grid import load_grid
    from core.analysis.identification import load_identification
    from core.analysis.splitting import load_splitting
    from core.analysis.steering import load_steering
    from core.analysis.suggestions import load_suggestions
    from core.dashboard.browse import load_index
    from core.sae.activations import sparse_codes
    from core.workspace.workspace import Workspace

    ident_out = run_cli("identify", "--workspace", name, "--attribute", "language", "--positive", "es")
    for argv in (("analyze",), ("dashboard-cache", "--no-umap")):
        out = run_cli(*argv, "--workspace", name)
        assert out.rc == 0, out
    forced = run_cli(
        "identify", "--workspace", name, "--attribute", "language", "--positive", "es", "--force"
    )
    ws = Workspace.open(name)
    ident = load_identification(ws, *FEATURE)
    ds = load_feature_dataset(ws, *FEATURE)
    index = load_index(ws, LARGE)
    idx, val = sparse_codes(ws, LARGE)
    return {
        "identify output": ident_out.out,
        "identify warnings": [line for line in ident_out.err.splitlines() if line.startswith("warning:")],
        "identify --force output": forced.out,
        "feature split": (ds.train_rows.tolist(), ds.test_rows.tolist(), ds.y_test.tolist()),
        "identification": [
            (m["model"], m["latent"], m["precision"], m["recall"], m["f1"], m["probe_accuracy"])
            for m in ident["models"]
        ],
        "grid": load_grid(ws, *FEATURE).to_dict("records"),
        "splitting": load_splitting(ws, *FEATURE)["tracks"],
        "steering": load_steering(ws, "language", "es", LARGE, negatives=["en"])["classes"],
        "suggestions": load_suggestions(ws, LARGE).to_dict("records"),
        "browse index": (
            index.stats.to_dict("records"),
            np.asarray(index.rows).tolist(),
            np.asarray(index.values).round(5).tolist(),
        ),
        "activations": (idx.tolist(), val.round(5).tolist()),
    }


@pytest.fixture(scope="module")
def answers(_analysed_template, tmp_path_factory) -> dict:
    """{change: (answers of the analysed workspace before, after the change without --force, of a
    fresh workspace with the changed content and the same models)}."""
    out = {}
    for change in CHANGES:
        root = tmp_path_factory.mktemp(f"stale-{change}")
        shutil.copytree(_analysed_template, root / WORKSPACE)
        seg, emb = _changed_content(_analysed_template, change)
        with _voxsae_data(root):
            before = _analyse(WORKSPACE)
            _import(root, WORKSPACE, seg, emb)
            after = _analyse(WORKSPACE)
            _import(root, "fresh", seg, emb)
            shutil.copytree(_analysed_template / "models", root / "fresh" / "models")
            fresh = _analyse("fresh")
        out[change] = (before, after, fresh)
    return out


CACHES = (
    "identify output",
    "feature split",
    "identification",
    "grid",
    "splitting",
    "steering",
    "suggestions",
    "browse index",
    "activations",
)
# what the change must alter (else the test could not tell an old answer from a fresh one): a
# permutation leaves the per-latent statistics (suggestions) and what identification finds; a
# relabelled column leaves the embeddings' latents; one moved row changes only what it touches
MUST_DIFFER = {
    "permuted": {"feature split", "browse index", "activations", "steering", "splitting"},
    "label": set(CACHES) - {"activations"},
    "row": {"activations", "browse index", "steering"},
}


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("cache", CACHES)
def test_a_changed_input_gives_a_fresh_answer(answers, change, cache):
    before, after, fresh = answers[change]
    assert after[cache] == fresh[cache], f"{cache} after the {change} change is not a fresh computation"
    if cache in MUST_DIFFER[change]:
        assert after[cache] != before[cache], f"{cache}: the {change} change did not alter it"


@pytest.mark.parametrize("change", CHANGES)
def test_identify_without_force_equals_with_force(answers, change):
    """The issue's reproduction: after the new import, `identify` prints what `--force` does."""
    _, after, _ = answers[change]
    assert after["identify output"] == after["identify --force output"]
    assert "es vs en" in after["identify output"] and after["identify output"].count("topk-L") == len(MODELS)


@pytest.mark.parametrize("change", CHANGES)
def test_models_trained_on_the_old_content_are_named(answers, change):
    before, after, _ = answers[change]
    assert before["identify warnings"] == []
    assert after["identify warnings"] == [
        f"warning: model(s) {', '.join(MODELS)} were trained on other content than workspace w holds now; "
        "their analyses are computed on the current content (`python -m core train` retrains them)"
    ]


@pytest.fixture
def music_without_speakers(trained_ws):
    """The trained workspace with its hold-music rows speaker-less (they group by `source`)."""
    from core.workspace.workspace import Workspace

    ws = Workspace.open(trained_ws)
    seg = ws.segments.copy()
    seg.loc[seg["class"] == "music", "speaker"] = ""
    return Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder=ws.embedder, sample_rate=0)


def test_a_changed_source_draws_a_new_feature_split(music_without_speakers):
    """`source` groups the speaker-less rows, so a new `source` column must give a new split, though
    the workspace fingerprint (embeddings, ids, metadata values) stays the same."""
    from core.analysis.datasets import FeatureDataset, split_hash
    from core.analysis.identification import identify, load_identification
    from core.workspace.workspace import Workspace

    ws = music_without_speakers
    old = identify(ws, "class", "music", ["voice"])
    seg = ws.segments.assign(source=[f"call{i % 40}.wav" for i in range(len(ws))])
    new = Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder=ws.embedder, sample_rate=0)
    assert new.fingerprint == ws.fingerprint
    assert load_identification(new, "class", "music", ["voice"]) is None  # the old result is not shown
    reused = FeatureDataset.load_or_build(new, "class", "music", ["voice"])
    fresh = FeatureDataset.build(new, "class", "music", ["voice"])
    assert split_hash(reused) == split_hash(fresh) != old["split_hash"]
    assert identify(new, "class", "music", ["voice"])["split_hash"] == split_hash(fresh)


def test_a_renamed_column_renames_the_suggestions_and_the_browse_index(trained_ws):
    from core.analysis.suggestions import compute_suggestions, load_suggestions
    from core.dashboard.browse import ensure_index, load_index
    from core.workspace.workspace import Workspace

    ws = Workspace.open(trained_ws)
    compute_suggestions(ws, LARGE)
    ensure_index(ws, LARGE)
    assert "class" in set(load_suggestions(ws, LARGE)["attribute"])
    seg = ws.segments.rename(columns={"class": "category"})
    new = Workspace.create(ws.root, seg, np.asarray(ws.embeddings), embedder=ws.embedder, sample_rate=0)
    assert new.fingerprint == ws.fingerprint  # the fingerprint does not see column names
    assert load_suggestions(new, LARGE) is None and load_index(new, LARGE) is None
    attrs = set(compute_suggestions(new, LARGE)["attribute"])
    assert "category" in attrs and "class" not in attrs
    names = set(ensure_index(new, LARGE).stats["association"])
    assert any(n.startswith("category=") for n in names) and not any(n.startswith("class=") for n in names)


def test_the_umap_map_of_old_embeddings_is_never_shown(trained_ws):
    """The map is keyed on the embeddings it projects: a re-import gets none until it is computed."""
    from core.dashboard.projection import load_projection, projection_path, save_projection
    from core.workspace.workspace import Workspace

    ws = Workspace.open(trained_ws)
    save_projection(ws, np.arange(len(ws)), np.random.default_rng(0).standard_normal((len(ws), 2)))
    assert load_projection(ws) is not None
    emb = np.asarray(ws.embeddings).copy()
    emb[0] += 1.0
    new = Workspace.create(ws.root, ws.segments, emb, embedder=ws.embedder, sample_rate=0)
    assert projection_path(new) != projection_path(ws)
    assert load_projection(new) is None
    rows = np.arange(len(new))[::-1].copy()
    save_projection(new, rows, np.zeros((len(new), 2)))
    np.testing.assert_array_equal(load_projection(new).rows, rows)
