"""core.dashboard.splitting_view: the splitting page's choices and the splits at one (arch, K)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.analysis.splitting import tracks_frame
from core.dashboard import splitting_view
from core.errors import NotFoundError


def _split(arch, k, small, large, children, split_children):
    return {
        "arch": arch,
        "k": k,
        "small_model": small,
        "large_model": large,
        "parent": 3,
        "split": bool(split_children),
        "split_children": split_children,
        "children": [
            {
                "latent": c,
                "captures": f"es {c}",
                "capture_share": 0.5,
                "cover": 0.4,
                "exclusive_cover": 0.3,
                "decoder_cos": 0.9,
            }
            for c in children
        ],
    }


RESULT = {
    "positive": "es",
    "tracks": [
        {"arch": a, "k": k, "d_sae": d, "fraction": 0.5}
        for a in ("relu", "topk")
        for k in ((None,) if a == "relu" else (4, 8))
        for d in (16, 32)
    ],
    "splits": [
        _split("topk", 4, "topk-L16-K4", "topk-L32-K4", [5, 9, 11], [5, 9]),
        _split("topk", 8, "topk-L16-K8", "topk-L32-K8", [2], [2]),
        _split("topk", 8, "topk-L16-K8", "topk-L32-K8", [7], []),
    ],
}


def test_choices():
    tracks = tracks_frame(RESULT)
    assert splitting_view.architectures(tracks) == (["relu", "topk"], "topk")
    assert splitting_view.architectures(tracks[tracks["arch"] == "relu"]) == (["relu"], "relu")
    assert splitting_view.architectures(pd.DataFrame()) == ([], None)
    ks, k = splitting_view.k_choices(RESULT, tracks, "topk")
    assert ks == [4, 8] and k in ks
    assert splitting_view.k_choices(RESULT, tracks, None) == ([], None)


def test_splits_at_and_options():
    at4 = splitting_view.splits_at(RESULT, "topk", 4)
    assert list(at4["child"]) == [5, 9] and set(at4["large_model"]) == {"topk-L32-K4"}
    assert list(splitting_view.splits_at(RESULT, "topk", 8)["child"]) == [2]
    assert splitting_view.splits_at(RESULT, "relu", None).empty
    assert len(splitting_view.splits_at(RESULT, None, None)) == 3  # no architecture: every split
    assert splitting_view.child_options(at4) == {
        "topk-L32-K4 latent 5 (es 5)": ("topk-L32-K4", 5),
        "topk-L32-K4 latent 9 (es 9)": ("topk-L32-K4", 9),
    }


def test_stored_results_per_task(tmp_path, make_workspace, monkeypatch):
    from core.analysis import splitting

    ws = make_workspace(
        tmp_path / "ws", np.ones((4, 4)), language=["es", "en"] * 2, **{"class": ["voice", "music"] * 2}
    )
    calls = []

    def load(ws_, attribute, positive, negatives):
        calls.append((attribute, positive, negatives))
        if attribute == "class":
            raise NotFoundError("no stored splitting")
        return RESULT

    monkeypatch.setattr(splitting, "load_splitting", load)
    assert splitting_view.stored_results(ws) == {"language: es vs en": RESULT}
    assert calls == [("language", "es", ["en"]), ("class", "music", ["voice"])]  # every task, in order
    monkeypatch.setattr(splitting, "load_splitting", lambda *args: None)
    assert splitting_view.stored_results(ws) == {}
