"""core.dashboard.labeling_view: suggestions, history and label tables for the labeling page."""

from __future__ import annotations

import pandas as pd

from core.dashboard import labeling_view
from core.labels.store import ImportReport, LabelStore


def test_suggestion_lines_keep_detected_values_best_first():
    sugg = pd.DataFrame(
        {
            "latent": [3, 3, 3, 4],
            "rank": [2, 1, 3, 1],
            "attribute": ["gender", "language", "class", "language"],
            "value": ["f", "es", "music", "en"],
            "precision": [0.6, 0.9, 0.0, 0.8],
            "recall": [0.5, 0.8, 0.0, 0.7],
            "f1": [0.55, 0.85, 0.0, 0.75],
        }
    )
    lines = labeling_view.suggestion_lines(sugg, 3)
    assert lines == [
        "latent 3: language=es (precision 90%, recall 80%, F1 0.85)",
        "latent 3: gender=f (precision 60%, recall 50%, F1 0.55)",
    ]
    assert labeling_view.suggestion_lines(sugg, 9) == []


def test_history_and_labels_tables(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.save("m", 3, "Spanish", "es voices", "lang; es", 0.8, "ana")
    store.save("m", 3, "Spanish female", "", "lang", 0.9, "bo", expected_version=1)
    store.save("m", 5, "music", author="ana")
    hist = labeling_view.history_frame(store.history("m", 3))
    assert list(hist.columns) == labeling_view.HISTORY_COLUMNS
    assert list(hist["name"]) == ["Spanish female", "Spanish"]  # newest first
    assert list(hist["tags"]) == ["lang", "lang; es"] and len(hist["saved"].iloc[0]) == 19
    labels = labeling_view.labels_frame(store.for_model("m"))
    assert list(labels["latent"]) == [3, 5] and list(labels["version"]) == [2, 1]
    assert list(labels.columns) == ["latent", "name", "tags", "confidence", "author", "version"]
    errors = labeling_view.import_errors_frame(ImportReport(1, [(3, "no such model")]))
    assert errors.to_dict("records") == [{"line": 3, "problem": "no such model"}]


def test_import_format_is_the_file_extension():
    assert labeling_view.import_format("Labels.JSON") == "json"
    assert labeling_view.import_format("x.csv") == "csv"
    assert labeling_view.import_format("notes.txt") == "txt"  # refused by the import, by name
    assert labeling_view.import_format("no-extension") == ""


def test_import_message_says_what_was_saved_and_what_was_skipped():
    assert labeling_view.import_message(ImportReport(imported=3)) == "Imported 3 label(s)."
    report = ImportReport(imported=1, errors=[(2, "latent is not an integer: True"), (4, "name is empty")])
    assert labeling_view.import_message(report) == (
        "Imported 1 label(s); skipped 2 row(s) with a problem (listed below, nothing of them was saved)."
    )
    assert list(labeling_view.import_errors_frame(report)["line"]) == [2, 4]
