"""core.dashboard.overview: attribute counts and the NMSE-against-K rows (the models table is
tested with a trained model in test_browse)."""

from __future__ import annotations

import pandas as pd

from core.dashboard.overview import MODEL_COLUMNS, attribute_counts, nmse_by_k


def test_attribute_counts_from_the_summary():
    summary = {"segments": 10, "hours": 0.1, "embedder": "x", "language": {"": 2, "en": 5, "es": 3}}
    frames = attribute_counts(summary)
    assert list(frames) == ["language"]
    assert frames["language"].to_dict("list") == {"value": ["(none)", "en", "es"], "segments": [2, 5, 3]}


def test_nmse_by_k_drops_models_without_either():
    table = pd.DataFrame(
        [
            ["topk-L16-K4", "topk", 16, 4, "segments", 0.2, 0.8, 4.0, 0.0, ""],
            ["relu-L16", "relu", 16, None, "windows", 0.3, 0.7, 9.0, 1.0, ""],
            [
                "topk-L32-K4",
                "topk",
                32,
                4,
                "both",
                None,
                None,
                None,
                None,
                "demo (900 rows, fingerprint 1a2b3c4d)",
            ],
        ],
        columns=MODEL_COLUMNS,
    )
    assert list(nmse_by_k(table)["model"]) == ["topk-L16-K4"]
