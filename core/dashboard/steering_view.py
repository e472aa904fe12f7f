"""The steering page's data: core.analysis.steering's session for a (model, task), a signed slider
value, the chosen samples, and long-form frames and tables for the charts.

The slider reruns only steer_signed + steering_frames + means_table: vectorised, no decoding.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd

from core.dashboard.tasks import Task
from core.errors import InputError, NotFoundError

MAX_DIST_POINTS = 4000
"""At most this many samples (seeded subsample) go into the distribution chart; means use all."""
BOTH_CLASSES = "both classes"
CHOSEN_SEGMENTS = "chosen segments"
SLIDER_RANGE = (-3.0, 3.0)
"""The values the steering slider offers for a."""
DEFAULT_VALUE = 1.0


def slider_value(value) -> tuple[float, str | None]:
    """(the slider's value, a warning or None) for a requested a (e.g. from a hand-edited link):
    anything that is not a finite number within SLIDER_RANGE falls back to DEFAULT_VALUE."""
    low, high = SLIDER_RANGE
    try:
        a = float(value)
    except (TypeError, ValueError):
        a = float("nan")
    if low <= a <= high:  # False for NaN
        return a, None
    return (
        DEFAULT_VALUE,
        f"a = {value} is not a value the slider offers ({low:g} to {high:g}); showing a = {DEFAULT_VALUE:g}",
    )


def steering_session(ws, model: str, task: Task):
    """core.analysis.steering's session for (model, task): encodes the task's rows once."""
    from core.analysis.datasets import FeatureDataset
    from core.analysis.steering import SteeringSession
    from core.sae.catalog import get_model

    ds = FeatureDataset.load_or_build(ws, task.attribute, task.positive, list(task.negatives))
    session = SteeringSession.build(ws, get_model(ws, model), ds)
    session.test_rows = np.asarray(ds.test_rows, dtype=np.int64)  # for picking segments
    return session


def default_latent(ws, model: str, task: Task) -> int | None:
    """The latent identification found for this model and task (None when not computed)."""
    from core.analysis.identification import load_identification

    try:
        stored = load_identification(ws, task.attribute, task.positive, list(task.negatives))
    except (NotFoundError, InputError):
        return None
    for m in (stored or {}).get("models", []):
        if m.get("model") == model:
            return int(m["latent"])
    return None


# -- which samples ------------------------------------------------------------------------------
def sample_modes(session) -> list[str]:
    """The sample choices: both classes, only one class, or segments picked by id."""
    pos, neg = session.class_names
    return [BOTH_CLASSES, f"only {pos}", f"only {neg}", CHOSEN_SEGMENTS]


def test_segment_ids(ws, session) -> np.ndarray:
    """segment_id of each of the session's test samples (what 'chosen segments' picks from)."""
    return ws.segments["segment_id"].to_numpy()[session.test_rows]


def sample_mask(session, mode: str, ids: np.ndarray | None = None, chosen=()) -> np.ndarray | None:
    """Boolean mask over the session's test samples for a mode of sample_modes (None: all)."""
    pos, neg = session.class_names
    if mode == f"only {pos}":
        return np.asarray(session.y, dtype=bool)
    if mode == f"only {neg}":
        return ~np.asarray(session.y, dtype=bool)
    if mode == CHOSEN_SEGMENTS:
        return np.isin(ids, list(chosen))
    return None


# -- one slider position ----------------------------------------------------------------------
def steer_signed(session, latent: int, value: float, rows_mask: np.ndarray | None = None):
    """Steering with a signed slider value a.

    a > 0: the paper's direction (positives set to -a, negatives to +a; Eqs. 1-2);
    a < 0: the reverse (positives set to +|a|, negatives to -|a|);
    a = 0: no change. `rows_mask` keeps only some test samples (chosen segments).
    """
    value = float(value)
    if value > 0:
        res = session.steer(latent, value)
    elif value < 0:
        swapped = copy.copy(session)
        swapped.y = ~session.y
        res = swapped.steer(latent, -value)
        res = dataclasses.replace(res, y=session.y, value=value)
    else:
        res = session.steer(latent, 1.0)
        res = dataclasses.replace(
            res,
            value=0.0,
            delta_after=res.delta_before,
            speaker_cos_after=res.speaker_cos_before,
            target=np.asarray(session.z[:, int(latent)], dtype=np.float64),
        )
    if rows_mask is not None:
        m = np.asarray(rows_mask, dtype=bool)
        res = dataclasses.replace(
            res,
            y=res.y[m],
            delta_before=res.delta_before[m],
            delta_after=res.delta_after[m],
            speaker_cos_before=res.speaker_cos_before[m],
            speaker_cos_after=res.speaker_cos_after[m],
            target=np.asarray(res.target)[m],
        )
    return res


def steering_frames(res, max_points: int = MAX_DIST_POINTS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long-form delta_s distributions: class, when, delta_s; means table per class)."""
    pos, neg = res.class_names
    keep = np.arange(len(res.y))
    if len(keep) > max_points:
        keep = np.sort(np.random.default_rng(0).choice(len(keep), max_points, replace=False))
    cls = np.where(res.y[keep], pos, neg)
    n = len(cls)
    dist = pd.DataFrame(
        {
            "class": np.concatenate([cls, cls]),
            "when": np.repeat(np.array(["before", "after"]), n),
            "delta_s": np.concatenate([res.delta_before[keep], res.delta_after[keep]]),
        }
    )
    rows = []
    for name, flag in ((pos, True), (neg, False)):
        if not (res.y == flag).any():
            continue
        s = res.class_summary(flag)
        rows.append(
            {
                "class": name,
                "n": s["n"],
                "v_phi set to": -res.value if flag else res.value,
                "mean delta_s before": s["mean_before"],
                "mean delta_s after": s["mean_after"],
                "flipped": s["flipped_fraction"],
                "own-speaker cos before": s["speaker_cos_before"],
                "own-speaker cos after": s["speaker_cos_after"],
                "own-speaker cos change": s["speaker_cos_change"],
            }
        )
    return dist, pd.DataFrame(rows)


def signed(v) -> str:
    """'+0.1234' / '-0.1234'; 'n/a' for None or NaN."""
    if v is None or float(v) != float(v):
        return "n/a"
    return f"{float(v):+.4f}"


def means_table(means: pd.DataFrame) -> pd.DataFrame:
    """The means of steering_frames as text, one column per class (readable at any width)."""
    shown = means.copy()
    for col in shown.columns:
        if col == "n":
            shown[col] = [str(int(v)) for v in shown[col]]
        elif col == "flipped":
            shown[col] = [f"{100 * float(v):.1f} %" for v in shown[col]]
        elif col != "class":
            shown[col] = [signed(v) for v in shown[col]]
    return shown.set_index("class").T


def speaker_changes(means: pd.DataFrame) -> list[tuple[str, str]]:
    """(metric label, value) per class: how much each sample's own-speaker similarity moved."""
    return [
        (f"{r['class']}: own-speaker similarity change", signed(r["own-speaker cos change"]))
        for _, r in means.iterrows()
    ]
