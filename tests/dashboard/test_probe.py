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
