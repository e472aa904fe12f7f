"""core.dashboard.probe: nearest catalogue segments, probing an embedding or a segment, uploads."""

from __future__ import annotations

import numpy as np
import pytest
from dashboard_ws import hostile_uploads, tone, wav_of

from core.dashboard import probe
from core.errors import InputError, NotFoundError
from core.sae import SAEConfig, create_sae
from core.sae.checkpoint import save_sae

N, D_IN = 120, 8


@pytest.fixture(scope="module")
def ws(tmp_path_factory, make_workspace):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, D_IN))
    lang = np.where(np.arange(N) % 3 == 0, "es", "en")
    w = make_workspace(tmp_path_factory.mktemp("probe") / "ws", x, language=lang, gender="")
    save_sae(
        create_sae(SAEConfig(architecture="topk", d_in=D_IN, d_sae=12, k=3)), w.models_dir / "topk-L12-K3"
    )
    return w


def test_nearest_rows_match_brute_force(ws):
    x = np.asarray(ws.embeddings, dtype=np.float64)
    q = x[17] + 0.1
    cos = (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    rows, sims = probe.nearest_rows(ws, q, 5)
    assert list(rows) == list(np.argsort(-cos)[:5]) and np.allclose(sims, np.sort(cos)[::-1][:5], atol=1e-5)
    rows, _ = probe.nearest_rows(ws, x[17], 3, exclude_row=17)
    assert 17 not in rows


def test_probe_segment_is_its_embedding_without_itself(ws):
    class L:
        name = "Spanish"

    res = probe.probe_segment(ws, "topk-L12-K3", "s17", labels={0: L()}, n_nearest=4)
    same = probe.probe_embedding(ws, "topk-L12-K3", ws.embeddings[17], n_nearest=4, exclude_row=17)
    assert np.array_equal(res.embedding, ws.embeddings[17])
    assert list(res.latents["latent"]) == list(same.latents["latent"]) and len(res.latents) == 3  # K = 3
    assert (res.latents["activation"].diff().dropna() <= 0).all()
    assert list(res.latents["label"]) == ["Spanish" if j == 0 else "" for j in res.latents["latent"]]
    assert 17 not in set(res.nearest["row"]) and list(res.nearest["row"]) == list(same.nearest["row"])
    with pytest.raises(NotFoundError, match="no segment"):
        probe.probe_segment(ws, "topk-L12-K3", "nope")
    with pytest.raises(NotFoundError, match="topk-L12-K3"):
        probe.probe_segment(ws, "nope", "s17")
    with pytest.raises(InputError, match="dim"):
        probe.probe_embedding(ws, "topk-L12-K3", np.ones(3))


def test_nearest_caption(ws):
    res = probe.probe_embedding(ws, "topk-L12-K3", ws.embeddings[0], n_nearest=2)
    r = res.nearest.iloc[0]
    text = probe.nearest_caption(r)
    assert (
        text == f"cosine: `{r['cosine']:.3f}` · segment_id: `{r['segment_id']}` · language: `{r['language']}`"
    )


def test_a_bad_upload_is_named_not_its_temporary_file(ws):
    with pytest.raises(InputError) as err:
        probe.embed_upload(ws, "my clip.wav", b"not audio at all")
    assert "my clip.wav" in str(err.value) and "/tmp" not in str(err.value)


# -- hostile uploads: one InputError naming the upload (issue "Trust", the probe page) --------
@pytest.mark.parametrize(
    ("name", "data", "why"), hostile_uploads(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_hostile_uploads_are_one_error_naming_the_upload(ws, name, data, why):
    with pytest.raises(InputError) as err:
        probe.embed_upload(ws, name, data)
    text = str(err.value)
    assert text.startswith(f"{name}: ") and why in text, text
    assert "/tmp" not in text and "upload." not in text  # never the temporary file


def test_an_upload_longer_than_the_limit_is_refused_from_its_header(ws, monkeypatch):
    import core.audio.read

    decoded = []
    monkeypatch.setattr(core.audio.read, "load_audio", lambda *a, **k: decoded.append(a))
    long_wav = wav_of(np.full(8_000 * 601, 0.1), sr=8_000, subtype="PCM_U8")  # 10 min 1 s, 4.8 MB
    with pytest.raises(InputError, match=r"long.wav: 10.0 min of audio; a probed clip may be at most 10 min"):
        probe.embed_upload(ws, "long.wav", long_wav)
    assert decoded == []


def test_an_upload_past_the_size_limit_is_refused_before_it_is_written(ws, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "TemporaryDirectory", lambda: pytest.fail("wrote the upload"))
    with pytest.raises(InputError, match=r"big.wav: 25.0 MB, more than the 25 MB an upload may have"):
        probe.embed_upload(ws, "big.wav", b"\0" * (probe.MAX_UPLOAD_BYTES + 1))


def test_the_upload_limit_is_the_servers(ws):
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).resolve().parents[2] / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] * 2**20 == probe.MAX_UPLOAD_BYTES


def test_upload_names_are_shown_without_folders_or_control_characters(ws):
    with pytest.raises(InputError) as err:
        probe.embed_upload(ws, "../../etc/evil\nname.txt", b"x")
    assert str(err.value).startswith("evil?name.txt: not an audio file type")


def test_a_good_upload_is_decoded_and_reaches_the_embedder(ws):
    """A clip that passes every check gets as far as the workspace's embedder (here 'x', which
    cannot embed audio: the refusal names it)."""
    with pytest.raises(InputError, match="made with embedder 'x'"):
        probe.embed_upload(ws, "Clip.WAV", wav_of(tone(1.0)))


# -- a microphone recording: checked, segmented and embedded like ingested audio --------------
def _mfcc_ws(root, provenance=None):
    """A workspace of the weightless mfcc-stats embedder, so the probe embeds for real."""
    import pandas as pd

    from core.workspace.workspace import Workspace

    seg = pd.DataFrame(
        {"segment_id": ["a", "b"], "source": "x.wav", "start_s": 0.0, "end_s": 1.0, "duration_s": 1.0}
    )
    x = np.random.default_rng(0).standard_normal((2, 120)).astype(np.float32)
    return Workspace.create(
        root, seg, x, embedder="mfcc-stats", sample_rate=16_000, provenance=provenance or {}
    )


def _decoded(tmp_path, data: bytes) -> np.ndarray:
    """What a clip's bytes decode to (16-bit samples, as the probe reads them)."""
    from core.audio.read import load_audio

    (tmp_path / "clip.wav").write_bytes(data)
    return load_audio(tmp_path / "clip.wav")


def _speechlike(seconds: float, seed: int = 0) -> np.ndarray:
    """A 10 Hz-modulated harmonic tone at 0.3 peak: sound throughout, like speech's syllables."""
    t = np.arange(int(seconds * 16_000)) / 16_000
    f0 = 140 + 20 * np.sin(2 * np.pi * 0.5 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / 16_000
    x = sum(np.sin(h * phase) / h for h in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_a_recording_is_cut_and_embedded_as_ingest_would(tmp_path):
    """10 s of sound, 1 s of silence, 6 s of sound: ingest's segments of it (5+5 s, 6 s), each
    embedded by the workspace's embedder, their mean (at their mean norm) is the probe's embedding."""
    from core.audio.read import cut
    from core.audio.segmentation import segment_audio
    from core.embedders import get_embedder

    ws = _mfcc_ws(tmp_path / "m")
    audio = np.concatenate([_speechlike(10.0), np.zeros(16_000, np.float32), _speechlike(6.0, 1)])
    data = wav_of(audio)
    clip = probe.embed_recording(ws, data)
    decoded = _decoded(tmp_path, data)
    expected = segment_audio(decoded, 16_000)
    assert clip.pieces == expected and len(expected) == 3 and clip.seconds == pytest.approx(17.0)
    assert [round(r.duration_s) for r in clip.pieces] == [5, 5, 6]
    embs = get_embedder("mfcc-stats").embed([cut(decoded, 16_000, r.start_s, r.end_s) for r in expected])
    mean = embs.mean(axis=0)
    mean *= np.linalg.norm(embs, axis=1).mean() / np.linalg.norm(mean)
    assert clip.embedding.shape == (120,) and np.allclose(clip.embedding, mean, atol=1e-5)
    assert probe.embed_upload(ws, "clip.wav", data).embedding.tolist() == clip.embedding.tolist()  # one path
    assert probe.pieces_caption(clip) == (
        "17.0 s clip: 3 stretches of sound embedded (0.0-5.0 s, 5.0-10.1 s, 10.9-17.0 s), their mean probed"
    )


def test_a_short_recording_is_its_span_of_sound(tmp_path):
    """1.5 s of sound inside 3 s: no 4 s segment, so its span of sound is embedded (not refused)."""
    ws = _mfcc_ws(tmp_path / "m")
    audio = np.concatenate([np.zeros(12_000), _speechlike(1.5), np.zeros(12_000)]).astype(np.float32)
    clip = probe.embed_recording(ws, wav_of(audio))
    assert len(clip.pieces) == 1
    start, end = clip.pieces[0]
    assert start == pytest.approx(0.75 - 0.05, abs=0.02) and end == pytest.approx(2.25 + 0.05, abs=0.02)


def test_the_workspace_segmentation_and_channel_are_used(tmp_path):
    from core.audio.channel import telephone_channel
    from core.audio.read import cut
    from core.audio.segmentation import SegmentationConfig
    from core.embedders import get_embedder

    cfg = SegmentationConfig(min_s=2.0, max_s=3.0, short_min_s=1.0).to_dict()
    ingested = _mfcc_ws(tmp_path / "i", {"command": "ingest", "segmentation": cfg, "telephony": True})
    demo = _mfcc_ws(tmp_path / "d", {"command": "demo-corpus", "settings": {"segmentation": cfg}})
    assert probe.workspace_segmentation(ingested) == SegmentationConfig(**cfg)
    assert probe.workspace_segmentation(demo) == SegmentationConfig(**cfg)
    assert probe.workspace_segmentation(_mfcc_ws(tmp_path / "n")) == SegmentationConfig()
    audio = _speechlike(6.0)
    clip = probe.embed_recording(ingested, wav_of(audio))
    assert [round(r.duration_s, 1) for r in clip.pieces] == [3.0, 3.0]  # max_s 3, not 8
    phone = telephone_channel(_decoded(tmp_path, wav_of(audio)), 16_000)
    embs = get_embedder("mfcc-stats").embed([cut(phone, 16_000, r.start_s, r.end_s) for r in clip.pieces])
    assert np.allclose(clip.embedding, probe.mean_embedding(embs), atol=1e-5)
    plain = probe.embed_recording(demo, wav_of(audio))  # demo-corpus audio is stored after its channel
    assert plain.pieces == clip.pieces and not np.allclose(plain.embedding, clip.embedding, atol=1e-3)


@pytest.mark.parametrize(
    ("audio", "why"),
    [
        (None, "the recording: empty file (0 bytes)"),
        (np.zeros(0), "the recording: empty audio"),
        (np.zeros(48_000), "the recording: audio is all silence"),
        (0.0003 * np.random.default_rng(0).standard_normal(48_000), "the recording: silence: no sound found"),
        (tone(0.2), "the recording: 0.20 s of audio; a probed clip needs at least 0.5 s"),
        (
            np.concatenate([np.zeros(16_000), tone(0.3), np.zeros(16_000)]),
            "the recording: only 0.43 s of sound; a probed clip needs at least 0.5 s",
        ),
    ],
    ids=["no bytes", "no samples", "digital silence", "hiss under the floor", "too short", "a click"],
)
def test_a_bad_recording_is_one_error_naming_it(tmp_path, audio, why):
    ws = _mfcc_ws(tmp_path / "m")
    with pytest.raises(InputError) as err:
        probe.embed_recording(ws, b"" if audio is None else wav_of(audio))
    assert str(err.value).startswith(why), str(err.value)
    assert "/tmp" not in str(err.value)


def test_warm_embedder_loads_the_workspace_embedder_once(tmp_path, ws):
    from core.embedders import _loaded_embedder as loaded  # get_embedder's per-process cache

    loaded.cache_clear()
    probe.warm_embedder(ws)  # embedder 'x': nothing to load, and no error
    assert loaded.cache_info().currsize == 0
    probe.warm_embedder(_mfcc_ws(tmp_path / "m"))
    assert loaded.cache_info().currsize == 1
    probe.embed_recording(_mfcc_ws(tmp_path / "m2"), wav_of(_speechlike(5.0)))
    assert loaded.cache_info().currsize == 1 and loaded.cache_info().hits >= 1


def test_mean_embedding_keeps_the_pieces_norm():
    units = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    assert np.allclose(probe.mean_embedding(units), [2**-0.5, 2**-0.5])
    assert np.allclose(probe.mean_embedding(np.array([[3.0, 4.0]])), [3.0, 4.0])


def test_active_summary_names_labels_then_associations():
    import pandas as pd

    lat = pd.DataFrame(
        {
            "latent": [5, 12, 3],
            "activation": [0.9, 0.5, 0.1],
            "label": ["Spanish", "", ""],
            "association": ["language=es", "class=music", ""],
        }
    )
    assert probe.active_summary(lat) == "Active: **5** (Spanish) · **12** (class=music) · **3**"
    assert probe.active_summary(lat, limit=1) == "Active: **5** (Spanish) · and 2 more"


def test_nearest_rows_of_a_one_row_workspace_without_itself_is_empty(tmp_path, make_workspace):
    one = make_workspace(tmp_path / "one", np.ones((1, D_IN)), language=["es"], gender="")
    rows, sims = probe.nearest_rows(one, np.ones(D_IN), 5, exclude_row=0)
    assert rows.size == 0 and sims.size == 0
    assert list(probe.nearest_rows(one, np.ones(D_IN), 5)[0]) == [0]


def test_an_upload_whose_header_says_1_hz_is_refused_for_its_rate(ws, tmp_path):
    from bad_audio import wav_saying_rate

    data = wav_saying_rate(tmp_path / "one.wav", 1).read_bytes()
    with pytest.raises(InputError, match=r"^one\.wav: corrupt audio header \(sample rate 1 Hz"):
        probe.embed_upload(ws, "one.wav", data)


def test_a_streamed_upload_is_held_to_the_limit_while_it_is_decoded(ws, tmp_path, monkeypatch):
    from bad_audio import streamed_flac

    monkeypatch.setattr(probe, "MAX_UPLOAD_S", 5.0)
    data = streamed_flac(tmp_path / "s.flac", seconds=6.0).read_bytes()
    with pytest.raises(InputError, match=r"^s\.flac: more than 0\.0833333 min of audio"):
        probe.embed_upload(ws, "s.flac", data)
    monkeypatch.setattr(probe, "MAX_UPLOAD_S", 600.0)
    with pytest.raises(InputError, match="made with embedder 'x'"):  # decoded, as far as the embedder
        probe.embed_upload(ws, "s.flac", data)
