import json

import numpy as np
import pytest
from _analysis_synth import build_workspace

from core.analysis.datasets import FeatureDataset, load_feature_dataset
from core.errors import InputError, NotFoundError


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return build_workspace(str(tmp_path_factory.mktemp("feat") / "synth"))


def test_split_is_speaker_disjoint_and_excludes_sae_speakers(ws):
    ds = FeatureDataset.build(ws, "language", "es", ["en"])
    seg = ws.segments
    spk = seg["speaker"].to_numpy()
    train_spk, test_spk = set(spk[ds.train_rows]), set(spk[ds.test_rows])
    assert train_spk and test_spk and not train_spk & test_spk
    sae_spk = set(spk[seg["split"].to_numpy() == "sae"])
    assert not (train_spk | test_spk) & sae_spk
    assert (seg["split"].to_numpy()[ds.rows] == "feature").all()
    assert set(seg["language"].to_numpy()[ds.rows]) == {"es", "en"}
    np.testing.assert_array_equal(ds.y_train, seg["language"].to_numpy()[ds.train_rows] == "es")
    # balanced test set (the paper's 400 + 400)
    assert ds.y_test.sum() == (~ds.y_test).sum() > 0
    # roughly the paper's proportion: ~40 % of the speakers held out
    assert 0.2 < len(test_spk) / (len(train_spk) + len(test_spk)) < 0.6
    assert ds.class_names == ("es", "en")
    assert set(ds.counts(ws, by="gender").index) == {"es female", "es male", "en female", "en male"}


def test_seeded_saved_and_reused(ws):
    a = FeatureDataset.load_or_build(ws, "language", "es", ["en"], seed=3)
    path = FeatureDataset.path_for(ws, "language", "es", ["en"])
    assert path.is_file()
    raw = json.loads(path.read_text())
    assert raw["fingerprint"] == ws.fingerprint and raw["train_ids"]
    mtime = path.stat().st_mtime_ns
    b = FeatureDataset.load_or_build(ws, "language", "es", ["en"], seed=3)
    assert path.stat().st_mtime_ns == mtime  # reused, not rewritten
    np.testing.assert_array_equal(a.train_rows, b.train_rows)
    np.testing.assert_array_equal(a.test_rows, b.test_rows)
    c = FeatureDataset.build(ws, "language", "es", ["en"], seed=3)
    np.testing.assert_array_equal(a.test_rows, c.test_rows)
    loaded = load_feature_dataset(ws, "language", "es", ["en"])
    np.testing.assert_array_equal(loaded.test_rows, a.test_rows)


def test_negatives_default_to_all_other_values_and_unbalanced_option(ws):
    ds = FeatureDataset.build(ws, "class", "music", balance_test=False)
    assert ds.negatives == ["voice"]
    assert ds.y_test.sum() != (~ds.y_test).sum()


def test_unknown_attribute_and_value(ws):
    with pytest.raises(NotFoundError, match=r"no attribute 'accent'.*language"):
        FeatureDataset.build(ws, "accent", "x")
    with pytest.raises(NotFoundError, match=r"no value 'fr'.*values: en, es"):
        FeatureDataset.build(ws, "language", "fr")
    with pytest.raises(NotFoundError, match=r"no value 'de'"):
        FeatureDataset.build(ws, "language", "es", ["de"])


def test_too_few_samples_of_a_class(tmp_path):
    ws = build_workspace(str(tmp_path / "tiny"), n_sae_speakers=2, n_feat_speakers=4, per_speaker=3)
    seg = ws.segments
    # keep only one Spanish feature sample
    from core.workspace.workspace import Workspace

    es_feat = np.flatnonzero((seg["language"] == "es").to_numpy() & (seg["split"] == "feature").to_numpy())
    seg.loc[es_feat[1:], "language"] = "en"
    ws2 = Workspace.create(
        str(tmp_path / "tiny2"), seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000
    )
    with pytest.raises(InputError, match=r"too few samples of class 'es'.*\(1; need at least"):
        FeatureDataset.build(ws2, "language", "es", ["en"])


def test_rows_without_speaker_group_by_call(tmp_path):
    from core.workspace.workspace import Workspace

    ws = build_workspace(str(tmp_path / "m"))
    seg = ws.segments.copy()
    seg.loc[seg["class"] == "music", "speaker"] = ""  # hold music has no speaker
    ws2 = Workspace.create(
        str(tmp_path / "m2"), seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000
    )
    ds = FeatureDataset.build(ws2, "class", "music", ["voice"])
    src = ws2.segments["source"].to_numpy()
    music_tr = set(src[ds.train_rows[ds.y_train]])
    music_te = set(src[ds.test_rows[ds.y_test]])
    assert music_tr and music_te and not music_tr & music_te


def test_rows_and_groups_match_a_row_by_row_reference(tmp_path):
    # the vectorised column passes against the rule written row by row: candidates are the
    # labelled feature rows, minus those whose speaker (non-empty) also has SAE rows; a row with
    # no speaker groups by its call. Edge rows: missing and empty speakers and values, a speaker
    # in both splits, values only in the SAE split
    from core.analysis.datasets import speaker_groups
    from core.workspace.workspace import Workspace

    ws = build_workspace(str(tmp_path / "r"))
    seg = ws.segments.copy()
    rng = np.random.default_rng(3)
    feat = np.flatnonzero(seg["split"].to_numpy() == "feature")
    sae = np.flatnonzero(seg["split"].to_numpy() == "sae")
    seg["speaker"] = seg["speaker"].astype(object)
    seg.loc[rng.choice(feat, 6, replace=False), "speaker"] = None
    seg.loc[rng.choice(feat, 6, replace=False), "speaker"] = ""
    seg.loc[rng.choice(sae, 6, replace=False), "speaker"] = ""
    seg.loc[[*sae[:3], feat[0]], "speaker"] = "spk-shared"  # a speaker in both splits
    seg["language"] = seg["language"].astype(object)
    seg.loc[rng.choice(feat, 4, replace=False), "language"] = None
    seg.loc[rng.choice(feat, 4, replace=False), "language"] = ""
    seg.loc[sae[:5], "language"] = "fr"  # a value no feature row holds
    seg.loc[feat[0], "language"] = "es"  # the shared speaker's feature row is a candidate
    ws2 = Workspace.create(
        str(tmp_path / "r2"), seg, np.asarray(ws.embeddings), embedder="synthetic", sample_rate=16000
    )
    ds = FeatureDataset.build(ws2, "language", "es", ["en"], balance_test=False)

    s = ws2.segments
    text = [("" if v is None or v != v else str(v)) for v in s["speaker"]]
    lang = [("" if v is None or v != v else str(v)) for v in s["language"]]
    split = list(s["split"])
    in_sae = {text[i] for i in range(len(s)) if split[i] == "sae" and text[i] != ""}
    want = [
        i
        for i in range(len(s))
        if split[i] == "feature" and lang[i] in ("es", "en") and text[i] not in in_sae
    ]
    assert sorted([*ds.train_rows, *ds.test_rows]) == want
    assert [lang[i] == "es" for i in ds.train_rows] == list(ds.y_train)
    dropped = [
        i for i in range(len(s)) if split[i] == "feature" and lang[i] in ("es", "en") and text[i] in in_sae
    ]
    assert dropped == [feat[0]] and "dropped 1 feature rows whose speaker is in the SAE split" in ds.notes
    src = list(s["source"])
    groups = speaker_groups(ws2, np.asarray(want))
    assert list(groups) == [text[i] if text[i] else f"source:{src[i]}" for i in want]
    assert "fr" in ws2.attribute_values("language") and "" not in ws2.attribute_values("language")
