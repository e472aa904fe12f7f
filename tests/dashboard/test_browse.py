"""core.dashboard.browse (latent table / latent page from a stored CSC index), core.dashboard.overview's
models table, core.dashboard.projection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.dashboard import browse
from core.dashboard.overview import models_table
from core.dashboard.projection import activation_map, load_projection, save_projection
from core.errors import NotFoundError
from core.sae import SAEConfig, create_sae
from core.sae.catalog import get_model
from core.sae.checkpoint import save_sae

N, D_IN, D_SAE = 300, 8, 12


@pytest.fixture(scope="module")
def setup(tmp_path_factory, make_workspace):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("browse")
    lang = np.where(np.arange(N) % 3 == 0, "es", "en")
    ws = make_workspace(
        root / "ws",
        rng.standard_normal((N, D_IN)),
        language=lang,
        gender=np.where(np.arange(N) % 2 == 0, "f", "m"),
        speaker=[f"p{i % 30}" for i in range(N)],
    )
    z = np.where(rng.random((N, D_SAE)) < 0.2, rng.random((N, D_SAE)), 0).astype(np.float32)
    z[:, 0] = np.where(lang == "es", 1.0 + rng.random(N), 0)  # latent 0 = Spanish, exactly
    z[:, 5] = 0  # dead
    w_dec = rng.standard_normal((D_SAE, D_IN)).astype(np.float32)
    w_dec[7] = 3 * w_dec[2] + 0.01 * rng.standard_normal(D_IN)  # 7 is 2's nearest
    sae = create_sae(SAEConfig(architecture="topk", d_in=D_IN, d_sae=D_SAE, k=3))
    with torch.no_grad():  # raw weights (not unit-norm): the page must normalise decoder rows itself
        sae.W_dec.copy_(torch.from_numpy(w_dec))
        sae.W_enc.copy_(torch.from_numpy(w_dec.T.copy()))
    save_sae(sae, ws.models_dir / "topk-L12-K3", metrics={"nmse": 0.1, "l0": 3, "dead_fraction": 1 / 12})
    idx = browse.build_index(ws, "topk-L12-K3", chunk_rows=64, latents_fn=lambda ws, m, rows: z[rows])
    return ws, z, w_dec, idx


def test_models_table(setup):
    ws, *_ = setup
    t = models_table(ws)
    assert list(t["model"]) == ["topk-L12-K3"] and t["k"].iloc[0] == 3
    assert t["training_rows"].iloc[0] == "segments"  # saved without a training record: segments
    assert abs(t["dead_pct"].iloc[0] - 100 / 12) < 1e-9
    with pytest.raises(NotFoundError, match="topk-L12-K3"):
        get_model(ws, "nope")


def test_index_matches_dense_and_is_stored(setup):
    ws, z, _, idx = setup
    for j in range(D_SAE):
        rows, vals = idx.latent_slice(j)
        expect = np.flatnonzero(z[:, j] > 0)
        assert np.array_equal(rows, expect) and np.allclose(vals, z[expect, j])
        assert np.allclose(idx.column(j), z[:, j])
    again = browse.load_index(ws, "topk-L12-K3")
    assert isinstance(again.rows, np.memmap) and np.array_equal(again.indptr, idx.indptr)
    st = idx.stats
    assert np.allclose(st["density"], (z > 0).mean(0))
    assert np.allclose(st["max_activation"], z.max(0))
    assert st.loc[5, "count"] == 0
    assert st.loc[0, "association"] == "language=es" and st.loc[0, "association_f1"] == pytest.approx(1.0)


def test_latent_table_carries_labels(setup):
    _, _, _, idx = setup

    class L:
        name = "Spanish"

    t = browse.latent_table(idx, {0: L()})
    assert t.loc[0, "label"] == "Spanish" and t.loc[1, "label"] == ""


def test_latent_page(setup):
    ws, z, w_dec, idx = setup
    dec = browse.decoder_directions(ws, "topk-L12-K3")
    p = browse.latent_page(ws, idx, 0, n_top=5, decoder=dec)
    assert p.count == int((z[:, 0] > 0).sum()) and p.max_activation == pytest.approx(z[:, 0].max())
    assert list(p.top["row"]) == list(np.argsort(-z[:, 0])[:5])
    assert (p.top["activation"].diff().dropna() <= 0).all()
    assert set(p.top["language"]) == {"es"} and int(p.histogram["count"].sum()) == p.count
    assert set(p.quantiles["quantile"]) == {0.1, 0.3, 0.5, 0.7, 0.9}
    lang = p.breakdown[p.breakdown["attribute"] == "language"]
    assert list(lang["value"]) == ["es"] and lang["top_share"].iloc[0] == 1.0
    p2 = browse.latent_page(ws, idx, 2, decoder=dec)
    assert p2.nearest["latent"].iloc[0] == 7 and p2.nearest["cosine"].iloc[0] > 0.99
    dead = browse.latent_page(ws, idx, 5, decoder=dec)
    assert dead.count == 0 and dead.top.empty
    with pytest.raises(NotFoundError, match="out of range"):
        browse.latent_page(ws, idx, D_SAE)


def test_projection_roundtrip(setup):
    ws, *_ = setup
    assert load_projection(ws) is None
    save_projection(ws, np.arange(10), np.zeros((10, 2)))
    proj = load_projection(ws)
    assert proj.coords.shape == (10, 2) and proj.rows.dtype == np.int64


def test_filter_latents(setup):
    _, z, _, idx = setup

    class L:
        name = "Spanish voices"

    table = browse.latent_table(idx, {0: L()})
    alive = browse.filter_latents(table)
    assert 5 not in set(alive["latent"]) and len(alive) == int(((z > 0).sum(0) > 0).sum())
    assert len(browse.filter_latents(table, hide_dead=False)) == D_SAE
    assert list(browse.filter_latents(table, labelled_only=True)["latent"]) == [0]
    assert list(browse.filter_latents(table, "spanish")["latent"]) == [0]  # label, any case
    by_assoc = browse.filter_latents(table, "LANGUAGE=ES")
    assert 0 in set(by_assoc["latent"]) and (by_assoc["association"] == "language=es").all()
    assert 7 in set(browse.filter_latents(table, "7")["latent"])  # a number also matches the id
    dense = browse.filter_latents(table, min_density_pct=30.0)
    assert (dense["density"] >= 0.3).all() and 0 in set(dense["latent"])  # a third of rows are es


def test_label_names_and_segment_caption(setup):
    ws, z, _, idx = setup

    class L:
        name = "Spanish"

    assert browse.label_names({3: L()}, [3, 4]) == ["Spanish", ""]
    assert browse.label_names(None, np.array([1])) == [""]
    page = browse.latent_page(ws, idx, 0, n_top=2)
    cols = browse.metadata_columns(page.top)
    assert cols[0] == "segment_id" and "row" not in cols and "start_s" not in cols
    row = page.top.iloc[0]
    text = browse.segment_caption(row, cols)
    assert text.startswith(f"**{row['activation']:.3f}** · segment_id: `{row['segment_id']}`")
    assert "language: `es`" in text and text.endswith("0.0-1.0 s")
    q = page.quantiles.iloc[0]
    assert browse.segment_caption(q, cols, quantile=True).startswith(
        f"q{int(round(q['quantile'] * 100))} · **"
    )
    row = row.copy()
    row["gender"] = ""
    assert "gender" not in browse.segment_caption(row, cols)  # empty values are left out


def test_activation_map_draws_active_points_last(setup):
    ws, z, _, idx = setup
    rows = np.array([0, 3, 6, 9, 12])
    proj = save_projection(ws, rows, np.arange(10, dtype=np.float32).reshape(5, 2))
    frame = activation_map(proj, idx.column(0))
    assert list(frame.columns) == ["x", "y", "activation", "row"]
    assert np.allclose(frame["activation"], np.sort(z[rows, 0]))  # ascending: active on top
    assert set(frame["row"]) == set(rows)
    assert (frame.set_index("row").loc[rows, "x"].to_numpy() == proj.coords[:, 0]).all()


def test_base_rates_of_the_shown_values_without_a_hash_index_of_all(setup):
    import pandas as pd

    rates = pd.Series([0.5, 0.3, 0.2], index=pd.Index(["spk1", "spk2", " "], dtype="string"))
    got = browse._rates_of(rates, pd.Index(["spk2", "nobody", "spk1"], dtype="string"))
    assert got == {"spk2": 0.3, "spk1": 0.5}
    ws, z, _, idx = setup
    p = browse.latent_page(ws, idx, 0, n_top=5, n_breakdown=40)
    shown = p.breakdown[p.breakdown["attribute"] == "speaker"]
    counts = ws.segments["speaker"].value_counts()
    assert len(shown) == browse.BREAKDOWN_TOP_VALUES
    assert list(shown["base_share"]) == pytest.approx([counts[v] / N for v in shown["value"]])
