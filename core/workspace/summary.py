"""`python -m core summary --workspace NAME`: what a workspace holds, and how linearly separable
its labelled attributes are in the embedding space.

The linear probe is the check the embedded default corpus is built to pass (issue 2): a
standardised logistic regression trained on some speakers and tested on others
(GroupShuffleSplit by speaker, so a probe cannot succeed by recognising voices it has seen).
A default probe whose values are there but cannot be measured (fewer than 2 speakers or calls on a
side) is printed with that reason, not left out without a word.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import pandas as pd

from core.constants import DEFAULT_WORKSPACE
from core.errors import InputError, NotFoundError
from core.workspace.workspace import Workspace

PROBES = (("language", "es", "en"), ("class", "music", "voice"))
"""The default probes: (attribute, positive, negative)."""
PROBE_SPLITS = 5
PROBE_TEST_SIZE = 0.3


def probe_groups(seg: pd.DataFrame) -> np.ndarray:
    """Group of each row for speaker-disjoint splits: the speaker, else the call, else the source.

    Rows without a speaker (music) are grouped by their call, so one call's hold music never sits
    on both sides of a split.
    """
    n = len(seg)
    groups = np.array([f"seg:{i}" for i in range(n)], dtype=object)
    for col, prefix in (("source", "src:"), ("call", "call:"), ("speaker", "spk:")):
        if col in seg.columns:
            vals = seg[col].fillna("").astype(str).to_numpy()
            ok = vals != ""
            groups[ok] = np.char.add(prefix, vals[ok].astype(str)).astype(object)
    return groups


def probe_scores(
    ws: Workspace, attribute: str, positive: str, negative: str | None = None, seed: int = 0
) -> dict:
    """Linear-probe scores for `attribute == positive` against `negative` (or every other value).

    Returns accuracy and balanced accuracy (means over PROBE_SPLITS speaker-disjoint splits),
    plus the row counts. Raises NotFoundError for a missing attribute/value, InputError when
    there are too few groups to split.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import GroupShuffleSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    seg = ws.segments
    if attribute not in seg.columns:
        raise NotFoundError(
            f"workspace {ws.name}: no attribute {attribute!r} (attributes: {', '.join(ws.attributes()) or 'none'})"
        )
    values = seg[attribute].fillna("").astype(str).to_numpy()
    pos = values == str(positive)
    neg = (values == str(negative)) if negative is not None else ((values != "") & ~pos)
    for label, mask in ((positive, pos), (negative if negative is not None else f"not {positive}", neg)):
        if not mask.any():
            raise NotFoundError(
                f"workspace {ws.name}: attribute {attribute!r} has no rows for {label!r} "
                f"(values: {', '.join(ws.attribute_values(attribute))})"
            )
    rows = np.flatnonzero(pos | neg)
    x = np.asarray(ws.embeddings[rows], dtype=np.float32)
    y = pos[rows].astype(int)
    groups = probe_groups(seg.iloc[rows])
    if len(set(groups[y == 1])) < 2 or len(set(groups[y == 0])) < 2:
        raise InputError(
            f"workspace {ws.name}: probe {attribute}={positive}: need at least 2 speakers/calls on each side"
        )
    splitter = GroupShuffleSplit(n_splits=PROBE_SPLITS * 4, test_size=PROBE_TEST_SIZE, random_state=seed)
    accs, baccs = [], []
    for train, test in splitter.split(x, y, groups):
        if len(set(y[train])) < 2 or len(set(y[test])) < 2:
            continue  # a split that left one class out on one side says nothing
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x[train], y[train])
        pred = model.predict(x[test])
        accs.append(float((pred == y[test]).mean()))
        baccs.append(float(balanced_accuracy_score(y[test], pred)))
        if len(accs) == PROBE_SPLITS:
            break
    if not accs:
        raise InputError(f"workspace {ws.name}: probe {attribute}={positive}: no split had both classes")
    return {
        "attribute": attribute,
        "positive": str(positive),
        "negative": "rest" if negative is None else str(negative),
        "accuracy": float(np.mean(accs)),
        "balanced_accuracy": float(np.mean(baccs)),
        "n_positive": int(y.sum()),
        "n_negative": int((1 - y).sum()),
        "splits": len(accs),
    }


def probe_accuracy(
    ws: Workspace, attribute: str, positive: str, negative: str | None = None, seed: int = 0
) -> float:
    """Mean test accuracy of a standardised logistic-regression probe, speaker-disjoint splits."""
    return probe_scores(ws, attribute, positive, negative, seed)["accuracy"]


def default_probes(ws: Workspace, seed: int = 0) -> list[dict]:
    """The default probes whose attribute and both values exist in this workspace; one that cannot
    be measured (too few speakers or calls to split) is listed with its reason under "skipped"."""
    out = []
    seg = ws.segments
    for attribute, positive, negative in PROBES:
        if attribute not in seg.columns:
            continue
        vals = set(seg[attribute].fillna("").astype(str))
        if positive in vals and negative in vals:
            try:
                out.append(probe_scores(ws, attribute, positive, negative, seed))
            except InputError as exc:
                why = str(exc).removeprefix(f"workspace {ws.name}: probe {attribute}={positive}: ")
                out.append(
                    {"attribute": attribute, "positive": positive, "negative": negative, "skipped": why}
                )
    return out


def summary_lines(ws: Workspace, probes: list[dict] | None = None) -> list[str]:
    info = ws.summary()
    seg = ws.segments
    lines = [
        f"workspace  {ws.name}  ({ws.root})",
        f"embedder   {ws.embedder} ({ws.dim}-d)   fingerprint {ws.fingerprint}",
        f"segments   {len(seg):,}   hours {info['hours']:.2f}"
        + (f"   speakers {info['speakers']:,}" if "speakers" in info else ""),
    ]
    for col in ("split", "class", "language", "gender", "accent"):
        if col in seg.columns:
            counts = seg[col].fillna("").astype(str).replace("", "(none)").value_counts().sort_index()
            lines.append(f"{col:<10} " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if "split" in seg.columns and "class" in seg.columns:
        for split, part in seg.groupby("split"):
            voice = part[part["class"] == "voice"] if "class" in part else part
            parts = [f"{len(part):,} segments"]
            if "speaker" in part:
                spk = part["speaker"].fillna("").astype(str)
                parts.append(f"{spk[spk != ''].nunique():,} speakers")
            if "language" in part and len(voice):
                share = (voice["language"] == "es").mean()
                parts.append(f"Spanish {share:.0%} of voice")
            parts.append(f"music {(part['class'] == 'music').mean():.0%}")
            lines.append(f"  split {split}: " + ", ".join(parts))
    probes = default_probes(ws) if probes is None else probes
    if probes:
        lines.append("linear probes (standardised logistic regression, speaker-disjoint GroupShuffleSplit, "
                     f"mean of {PROBE_SPLITS} splits, test {PROBE_TEST_SIZE:.0%}):")  # fmt: skip
        for p in probes:
            head = f"  {p['attribute']}: {p['positive']} vs {p['negative']}"
            if "skipped" in p:
                lines.append(f"{head}  not measured: {p['skipped']}")
                continue
            lines.append(
                f"{head}  accuracy {p['accuracy']:.3f}  "
                f"balanced {p['balanced_accuracy']:.3f}  (n={p['n_positive']:,}/{p['n_negative']:,})"
            )
    return lines


def print_summary(ws: Workspace) -> None:
    print("\n".join(summary_lines(ws)))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace", default=DEFAULT_WORKSPACE, help="workspace name or path (default: demo)"
    )


def main(args: argparse.Namespace) -> int:
    print_summary(Workspace.open(args.workspace))
    return 0
