"""The embedded default corpus, built small once per session: columns, values, splits,
determinism, idempotence, audio on disk, and the paper's signals (language, music) in the
default embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.constants import AUDIO_DIR, SPLIT_FEATURE, SPLIT_SAE
from core.democorpus import build as demo_corpus
from core.democorpus import calls as ca
from core.errors import InputError
from core.workspace.summary import probe_accuracy
from core.workspace.workspace import Workspace

SCALE = 0.05  # 24 pseudo-speakers (the minimum), about 230 segments
SEED = 7


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "small"
    ws, built = demo_corpus.build(str(root), scale=SCALE, seed=SEED, jobs=2, progress=False)
    assert built
    return ws


def test_columns_and_values(small_corpus):
    seg = small_corpus.segments
    for col in ("segment_id", "source", "start_s", "end_s", "duration_s",
                "speaker", "language", "gender", "class", "split"):  # fmt: skip
        assert col in seg.columns, col
    assert small_corpus.embeddings.shape == (len(seg), 256)
    assert np.isfinite(small_corpus.embeddings).all()
    assert set(seg["class"]) == {"voice", "music", "announcement"}
    assert set(seg["split"]) == {SPLIT_SAE, SPLIT_FEATURE}
    voice = seg[seg["class"] == "voice"]
    music = seg[seg["class"] == "music"]
    assert set(voice["language"]) == {"en", "es"} and set(voice["gender"]) == {"f", "m"}
    assert (
        (music["language"] == "").all() and (music["gender"] == "").all() and (music["speaker"] == "").all()
    )
    ann = seg[seg["class"] == "announcement"]
    assert set(ann["speaker"]) <= {"ivr-en", "ivr-es"} and (ann["split"] == SPLIT_SAE).all()
    # segments are 4-8 s pieces inside their call
    assert seg["duration_s"].between(4.0 - 1e-6, 8.0 + 1e-6).all()
    assert np.allclose(seg["end_s"] - seg["start_s"], seg["duration_s"], atol=1e-3)
    assert seg["segment_id"].is_unique
    assert seg["speaker"][seg["class"] == "voice"].nunique() == ca.MIN_SPEAKERS


def test_splits_are_speaker_disjoint_and_shaped_like_the_paper(small_corpus):
    seg = small_corpus.segments
    voice = seg[seg["class"] == "voice"]
    sae = set(voice.loc[voice["split"] == SPLIT_SAE, "speaker"])
    feat = set(voice.loc[voice["split"] == SPLIT_FEATURE, "speaker"])
    assert sae and feat and not sae & feat
    # one speaker, one language/gender/split
    per = voice.groupby("speaker")[["language", "gender", "split"]].nunique()
    assert (per == 1).all().all()
    # feature split roughly balanced es/en; sae split looks like traffic (Spanish a minority)
    fv = voice[voice["split"] == SPLIT_FEATURE]
    assert 0.35 <= (fv["language"] == "es").mean() <= 0.65
    sv = voice[voice["split"] == SPLIT_SAE]
    assert 0.05 <= (sv["language"] == "es").mean() <= 0.25
    sae_all = seg[seg["split"] == SPLIT_SAE]
    assert 0.02 <= (sae_all["class"] == "music").mean() <= 0.2


def test_labels_match_ground_truth_regions(small_corpus):
    regions = pd.read_parquet(small_corpus.audio_dir / demo_corpus.REGIONS_FILE)
    seg = small_corpus.segments
    for row in seg.sample(40, random_state=0).itertuples():
        calls = regions[regions["call"] == row.call]
        overlap = np.minimum(calls["end_s"], row.end_s) - np.maximum(calls["start_s"], row.start_s)
        best = calls.iloc[int(np.argmax(overlap.to_numpy()))]
        assert overlap.max() >= 0.8 * row.duration_s
        assert best["class"] == seg.loc[row.Index, "class"]  # ("class" is no itertuples field)
        assert best["speaker"] == row.speaker


def test_audio_is_stored_and_playable(small_corpus):
    seg = small_corpus.segments
    sources = seg["source"].unique()
    assert len(list((small_corpus.audio_dir).glob("*.flac"))) >= len(sources)
    path = small_corpus.source_path(sources[0])
    assert path is not None and path.parent == small_corpus.audio_dir
    import soundfile as sf

    info = sf.info(str(path))
    assert info.samplerate == ca.STORE_RATE and info.channels == 1
    assert info.duration >= seg.loc[seg["source"] == sources[0], "end_s"].max()
    prov = small_corpus.info.provenance
    for key in ("seed", "scale", "settings_fingerprint", "music_renderer", "channel_routing"):
        assert key in prov
    assert prov["seed"] == SEED and prov["scale"] == SCALE
    assert (small_corpus.root / AUDIO_DIR).is_dir()


def test_deterministic_from_the_seed(small_corpus, tmp_path):
    # the plan is a pure function of (seed, scale)
    a_speakers, a_calls = ca.plan_corpus(SEED, SCALE)
    b_speakers, b_calls = ca.plan_corpus(SEED, SCALE)
    assert a_speakers == b_speakers and [c.items for c in a_calls] == [c.items for c in b_calls]
    assert ca.plan_corpus(SEED + 1, SCALE)[0] != a_speakers
    # re-rendering calls (other workers, other order) gives the same segments table rows
    picked = [a_calls[i] for i in (len(a_calls) - 1, 0, 3)]
    results = demo_corpus.render_calls(picked, a_speakers, tmp_path, SEED, jobs=2, progress=False)
    again = demo_corpus.segments_table(results)
    seg = small_corpus.segments
    expected = seg[seg["call"].isin([c.call_id for c in picked])]
    pd.testing.assert_frame_equal(
        again.sort_values("segment_id").reset_index(drop=True),
        expected.sort_values("segment_id").reset_index(drop=True),
    )


def test_idempotent_and_bad_input(small_corpus):
    ws, built = demo_corpus.build(str(small_corpus.root), scale=SCALE, seed=SEED, progress=False)
    assert not built and ws.fingerprint == small_corpus.fingerprint
    with pytest.raises(InputError, match="scale"):
        demo_corpus.build(str(small_corpus.root), scale=0.0, progress=False)
    with pytest.raises(InputError, match="jobs"):
        demo_corpus.build(str(small_corpus.root), scale=SCALE, jobs=0, progress=False)


def test_cli_says_up_to_date(small_corpus, capsys):
    from core.cli import main

    rc = main(
        ["demo-corpus", "--workspace", str(small_corpus.root), "--scale", str(SCALE), "--seed", str(SEED)]
    )
    assert rc == 0
    assert "up to date" in capsys.readouterr().out


def test_probes_find_language_and_music(small_corpus):
    # 24 speakers (10 Spanish, ~3 in each test split): the full default reaches >= 0.90 / 0.95
    # (README); this small corpus must still be clearly separable, far above chance
    assert probe_accuracy(small_corpus, "class", "music", "voice") >= 0.95
    assert probe_accuracy(small_corpus, "language", "es", "en") >= 0.75
    ws = Workspace.open(small_corpus.root)
    assert ws.fingerprint == small_corpus.fingerprint


def test_audio_from_embeds_the_same_segments_with_a_second_embedder(small_corpus, tmp_path):
    ws, built = demo_corpus.build(
        str(tmp_path / "small-mfcc"), scale=SCALE, seed=SEED, embedder="mfcc-stats",
        audio_from=str(small_corpus.root), progress=False,
    )  # fmt: skip
    assert built and ws.embedder == "mfcc-stats" and ws.dim == 120
    pd.testing.assert_frame_equal(ws.segments, small_corpus.segments)
    assert np.isfinite(ws.embeddings).all() and ws.embeddings.shape == (len(small_corpus), 120)
    # the calls are the same files (linked or copied), the ground truth came along
    for src in sorted(small_corpus.audio_dir.iterdir()):
        assert (ws.audio_dir / src.name).read_bytes() == src.read_bytes()
    assert ws.info.provenance["audio_from"] == {
        "workspace": small_corpus.name, "fingerprint": small_corpus.fingerprint,
    }  # fmt: skip
    # the mfcc embeddings are the mfcc embedder's own numbers for the first segment
    from core.audio.read import cut, load_audio
    from core.embedders import get_embedder

    row = ws.segments.iloc[0]
    audio = cut(load_audio(ws.audio_dir / row["source"], 16000), 16000, row["start_s"], row["end_s"])
    np.testing.assert_allclose(get_embedder("mfcc-stats").embed([audio])[0], ws.embeddings[0], rtol=1e-5)
    # and up to date the second time, without rendering anything
    again, built = demo_corpus.build(
        str(tmp_path / "small-mfcc"), scale=SCALE, seed=SEED, embedder="mfcc-stats",
        audio_from=str(small_corpus.root), progress=False,
    )  # fmt: skip
    assert not built and again.fingerprint == ws.fingerprint


def test_audio_from_refuses_another_corpus_and_unknown_embedders(small_corpus, tmp_path):
    target = str(tmp_path / "other")
    with pytest.raises(InputError, match=r"other settings: seed 7 \(wanted 8\)"):
        demo_corpus.build(
            target, scale=SCALE, seed=SEED + 1, audio_from=str(small_corpus.root), progress=False
        )
    with pytest.raises(InputError, match="is the workspace being built"):
        demo_corpus.build(
            str(small_corpus.root), scale=SCALE, seed=SEED, audio_from=str(small_corpus.root), progress=False
        )
    with pytest.raises(InputError, match=r"--embedder 'titanet' is not one the demo can use"):
        demo_corpus.build(target, scale=SCALE, seed=SEED, embedder="titanet", progress=False)
    plain = Workspace.create(
        str(tmp_path / "plain"), small_corpus.segments, np.asarray(small_corpus.embeddings),
        embedder="resemblyzer", sample_rate=16000,
    )  # fmt: skip
    with pytest.raises(InputError, match="was not built by demo-corpus"):
        demo_corpus.build(target, scale=SCALE, seed=SEED, audio_from=str(plain.root), progress=False)
    assert not (tmp_path / "other").exists()


def test_the_default_corpus_stores_each_segments_windows(small_corpus):
    win = small_corpus.windows
    emb = np.asarray(small_corpus.embeddings)
    assert small_corpus.info.provenance["windows"]["kind"] == "resemblyzer partials"
    assert np.array_equal(np.unique(win.segment_rows), np.arange(len(emb)))  # every segment has windows
    assert len(win.segment_rows) > 4 * len(emb)  # 4-8 s segments: 4 to 10 partials of 1.6 s each
    rows = np.asarray(win.segment_rows)
    for row in (0, len(emb) // 2, len(emb) - 1):  # the segment is the normalised mean of its windows
        mean = np.asarray(win.embeddings)[rows == row].mean(axis=0)
        assert np.abs(mean / np.linalg.norm(mean) - emb[row]).max() < 1e-5


def test_measured_f0_and_rate_follow_the_truth_across_voices(small_corpus):
    """Pooled over every voice segment (all variants, accents, both languages): espeak's 0-100 pitch
    is no F0 order across variants, synth_f0_hz is; synth_rate orders the measured speaking rate."""
    from scipy.stats import spearmanr

    voice = small_corpus.segments[small_corpus.segments["class"] == "voice"]
    assert len(voice) > 150 and voice["speaker"].nunique() == ca.MIN_SPEAKERS
    assert voice[["synth_f0_hz", "synth_rate"]].notna().all().all()
    assert spearmanr(voice["f0_median_hz"], voice["synth_f0_hz"]).statistic >= 0.8
    assert spearmanr(voice["speech_rate"], voice["synth_rate"]).statistic >= 0.8
    # one F0 truth per speaker (a voice setting), a rate per turn (what was said)
    assert (voice.groupby("speaker")["synth_f0_hz"].nunique() == 1).all()
    assert voice.groupby("speaker")["synth_rate"].nunique().max() > 1
