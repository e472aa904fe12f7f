import altair as alt
import numpy as np
import pytest
from _analysis_synth import trained_workspace

from core.analysis.splitting import (
    compute_splitting,
    detect_splits,
    first_splits,
    load_splitting,
    split_reading,
    splits_frame,
    splitting_chart,
    tracks_frame,
)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return trained_workspace(tmp_path_factory, "split")


def test_detects_the_planted_gender_split(ws):
    res = compute_splitting(ws, "language", "es", ["en"])
    assert res["subgroup"] == "gender"
    assert set(res["groups"]) == {"es female", "es male", "en female", "en male"}
    pair = [
        s for s in res["splits"] if s["small_model"] == "topk-L6-K2" and s["large_model"] == "topk-L16-K2"
    ]
    assert len(pair) == 1 and pair[0]["split"], pair
    kids = [c for c in pair[0]["children"] if c["latent"] in pair[0]["split_children"]]
    assert {c["captures"] for c in kids} == {"es female", "es male"}
    assert all(c["decoder_cos"] > 0.5 for c in kids)
    # the small SAE's top latent covers both genders of Spanish; the large one's only one (Fig. 4)
    tf = tracks_frame(res).set_index(["d_sae", "group"])["fraction"]
    assert tf[(6, "es female")] > 0.9 and tf[(6, "es male")] > 0.9
    assert min(tf[(16, "es female")], tf[(16, "es male")]) < 0.5
    assert first_splits(res)[0]["large_model"] == "topk-L16-K2"
    assert "splits in topk-L16-K2 into latent" in split_reading(first_splits(res)[0], "es")
    assert set(splits_frame(res)["captures"]) == {"es female", "es male"}
    assert load_splitting(ws, "language", "es", ["en"])["splits"] == res["splits"]
    assert isinstance(splitting_chart(res), alt.Chart)


def test_no_split_when_one_child_covers_everything():
    rng = np.random.default_rng(0)
    labels = np.array(["es female"] * 50 + ["es male"] * 50 + ["en male"] * 100)
    z_small = np.zeros((200, 3))
    z_small[:100, 0] = 1
    z_large = np.zeros((200, 5))
    z_large[:100, 2] = 1  # the same feature, one latent
    z_large[:50, 4] = 1  # a sub-feature nested inside it: no exclusive share
    w = rng.normal(size=(5, 8))
    det = detect_splits(z_small, 0, z_large, np.vstack([w[2], w[0], w[1]]), w, labels)
    assert not det["split"]
    z_large2 = np.zeros((200, 5))
    z_large2[:50, 1] = 1
    z_large2[50:100, 3] = 1
    w2 = w.copy()
    w2[1] = w[2] + 0.3 * w[0]
    w2[3] = w[2] + 0.3 * w[4]
    det2 = detect_splits(z_small, 0, z_large2, np.vstack([w[2], w[0], w[1]]), w2, labels)
    assert det2["split"] and {c["captures"] for c in det2["children"]} == {"es female", "es male"}
