"""core.dashboard.probe: nearest catalogue segments, probing an embedding or a segment, uploads."""

from __future__ import annotations

import numpy as np
import pytest

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
