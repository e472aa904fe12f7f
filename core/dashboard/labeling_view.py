"""The labeling page's data: a latent's label suggestions (core.analysis.suggestions), its save
history and the labels of a model (core.labels.store) as tables, the models labels may name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.sae.catalog import list_models

HISTORY_COLUMNS = ["saved", "author", "name", "description", "tags", "confidence", "source"]


def suggestion_lines(suggestions: pd.DataFrame, latent: int) -> list[str]:
    """One line per attribute value this latent detects at all (F1 > 0), best first."""
    from core.analysis.suggestions import latent_suggestions, suggestion_text

    rows = latent_suggestions(suggestions, latent)
    return [suggestion_text(r) for _, r in rows[rows["f1"] > 0].iterrows()]


def history_frame(history: list[dict]) -> pd.DataFrame:
    """LabelStore.history rows as a table: save time as text, tags joined by '; '."""
    h = pd.DataFrame(history)
    h["saved"] = pd.to_datetime(h["saved_at"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
    h["tags"] = h["tags"].map(lambda t: "; ".join(t))
    return h[HISTORY_COLUMNS]


def labels_frame(labels: dict) -> pd.DataFrame:
    """LabelStore.for_model as a table: one row per labelled latent."""
    return pd.DataFrame(
        [
            {
                "latent": lab.latent,
                "name": lab.name,
                "tags": "; ".join(lab.tags),
                "confidence": lab.confidence,
                "author": lab.author,
                "version": lab.version,
            }
            for lab in labels.values()
        ]
    )


IMPORT_RULES = (
    "Each row is checked on its own: a row with a problem (unknown model, latent out of range, "
    "a name that is not text, confidence outside 0..1, ...) is skipped and listed with its line; "
    "every other row is imported. A file that cannot be read at all imports nothing."
)


def import_format(file_name: str) -> str:
    """The label file format an upload's name says: 'csv', 'json', or whatever else its extension
    is (which the import then refuses, naming the file)."""
    return Path(file_name).suffix.lower().lstrip(".")


def import_message(report) -> str:
    """What the page says after an import: how many rows were saved, how many skipped."""
    if not report.errors:
        return f"Imported {report.imported} label(s)."
    return (
        f"Imported {report.imported} label(s); skipped {len(report.errors)} row(s) with a problem "
        "(listed below, nothing of them was saved)."
    )


def import_errors_frame(report) -> pd.DataFrame:
    """The rows an import rejected (ImportReport.errors): line, problem."""
    return pd.DataFrame(report.errors, columns=["line", "problem"])


def known_models(ws) -> dict[str, int]:
    """Model name -> number of latents: what an imported label may name."""
    return {m.name: m.d_sae for m in list_models(ws)}
