"""Confidence intervals of a detector's precision and recall: a bootstrap over test speakers.

The test split holds whole speakers (core.analysis.datasets), and a speaker's segments are alike,
so the unit that varies from one test set to the next is the speaker, not the segment. A
resample draws the test speakers with replacement and takes all the segments of each; the
interval is the percentile interval of precision and recall over `resamples` such draws.

Vectorised: the draws are one matrix W [resamples, speakers] of how often each speaker is drawn
(the same W for every model of one identification, drawn once from `seed`), and a model's
per-speaker counts C [speakers, 3] (true positives, false positives, false negatives) give every
resample's counts at once as W @ C.

A workspace without a speaker column has no speakers to resample: the segments are resampled
instead, and the plan says so (`unit` 'segment', `note`). One test speaker has no interval: it
is [0, 1] (MIN_GROUPS), so no cell reaches the bar on one person, and `note` says so.

    plan = BootstrapPlan.for_test_split(ws, ds)          # ds: a FeatureDataset
    ci = plan.intervals(pred, ds.y_test)                 # Intervals(precision_lo, ..., recall_hi)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np

from core.errors import InputError

UNIT_SPEAKER = "speaker"
UNIT_SEGMENT = "segment"
NO_SPEAKER_NOTE = "no speaker column: the intervals resample test segments, not speakers"
MIN_GROUPS = 2
"""Fewest test speakers (or segments) a bootstrap can say anything with: every resample of one
speaker is that speaker, so its interval would be the point estimate itself (width 0), and a
cell at 100 % would pass the lower-bound bar on one person. With fewer, the interval is the
whole [0, 1] (nothing known) and the plan's note says so."""
ONE_GROUP_NOTE = "one test {unit}: no interval (every resample draws the same test set), shown as [0, 100]"


@dataclass(frozen=True)
class BootstrapConfig:
    """How the intervals are drawn; every field enters the key of the stored identification."""

    resamples: int = 1000
    """Number of bootstrap resamples of the test speakers."""
    seed: int = 0
    """Seed of the resampling (fixed, so a rerun gives the same intervals)."""
    level: float = 0.95
    """Coverage of the percentile interval: 0.95 -> the 2.5th and 97.5th percentiles."""

    def __post_init__(self) -> None:
        if not (isinstance(self.resamples, int) and self.resamples >= 1):
            raise InputError(f"bootstrap resamples {self.resamples!r}: must be an integer >= 1")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise InputError(f"bootstrap seed {self.seed!r}: must be an integer >= 0")
        if not (isinstance(self.level, float) and 0.0 < self.level < 1.0):  # NaN fails this too
            raise InputError(f"bootstrap level {self.level!r}: must be a number between 0 and 1")

    def key(self) -> dict:
        return asdict(self)


class Intervals(NamedTuple):
    precision_lo: float
    precision_hi: float
    recall_lo: float
    recall_hi: float


def resample_indices(n_groups: int, cfg: BootstrapConfig) -> np.ndarray:
    """[resamples, n_groups] int: the groups drawn (with replacement) by each resample."""
    return np.random.default_rng(cfg.seed).integers(0, n_groups, size=(cfg.resamples, n_groups))


def resample_weights(n_groups: int, cfg: BootstrapConfig) -> np.ndarray:
    """[resamples, n_groups] float: how many times each resample draws each group."""
    idx = resample_indices(n_groups, cfg)
    offsets = (np.arange(cfg.resamples) * n_groups)[:, None]
    counts = np.bincount((idx + offsets).ravel(), minlength=cfg.resamples * n_groups)
    return counts.reshape(cfg.resamples, n_groups).astype(np.float64)


def group_counts(group_index: np.ndarray, n_groups: int, pred, y) -> np.ndarray:
    """[n_groups, 3] float: true positives, false positives, false negatives of each group."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(y, dtype=bool)
    out = np.zeros((n_groups, 3))
    for j, hit in enumerate((p & t, p & ~t, ~p & t)):
        out[:, j] = np.bincount(group_index, weights=hit.astype(np.float64), minlength=n_groups)
    return out


def precision_recall(tp, fp, fn) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall from counts (arrays), 0 where undefined (sklearn's zero_division=0,
    as the point estimate)."""
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    pred, pos = tp + fp, tp + fn
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = np.divide(tp, pos, out=np.zeros_like(tp), where=pos > 0)
    return precision, recall


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """(lo, hi) percentile interval of the resampled `values` at coverage `level`."""
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


@dataclass
class BootstrapPlan:
    """The resampling of one test split: each test segment's group, and the draws."""

    group_index: np.ndarray
    """[n_test] int: the group (speaker, or segment) of each test segment."""
    n_groups: int
    """Number of test speakers (or segments, when the unit is 'segment')."""
    unit: str
    """'speaker' or 'segment' (no speaker column)."""
    cfg: BootstrapConfig
    """The resampling settings."""
    weights: np.ndarray
    """[resamples, n_groups]: how often each resample draws each group."""

    @classmethod
    def from_groups(cls, groups, cfg: BootstrapConfig | None = None, unit: str = UNIT_SPEAKER):
        """The plan for test segments whose groups are `groups` (labels, one per segment)."""
        cfg = cfg or BootstrapConfig()
        labels, index = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
        n = len(labels)
        if n == 0:
            raise InputError("no test segments to bootstrap")
        return cls(index.astype(np.int64), n, unit, cfg, resample_weights(n, cfg))

    @classmethod
    def for_test_split(cls, ws, ds, cfg: BootstrapConfig | None = None) -> BootstrapPlan:
        """The plan of a FeatureDataset's test split: its speakers (core.analysis.datasets
        .speaker_groups), or its segments when the workspace has no speaker column."""
        from core.analysis.datasets import speaker_groups

        groups = speaker_groups(ws, ds.test_rows)
        if groups is None:
            return cls.from_groups(np.arange(len(ds.test_rows)), cfg, UNIT_SEGMENT)
        return cls.from_groups(groups, cfg, UNIT_SPEAKER)

    @property
    def note(self) -> str | None:
        if self.n_groups < MIN_GROUPS:
            return ONE_GROUP_NOTE.format(unit=self.unit)
        return NO_SPEAKER_NOTE if self.unit == UNIT_SEGMENT else None

    @property
    def n_speakers(self) -> int | None:
        """Test speakers behind a cell (None when the workspace has no speaker column)."""
        return self.n_groups if self.unit == UNIT_SPEAKER else None

    def intervals(self, pred, y) -> Intervals:
        """Percentile intervals of the precision and recall of detector `pred` on the test labels `y`
        ([0, 1] each with fewer than MIN_GROUPS test groups)."""
        if self.n_groups < MIN_GROUPS:
            return Intervals(0.0, 1.0, 0.0, 1.0)
        boot = self.weights @ group_counts(self.group_index, self.n_groups, pred, y)  # [resamples, 3]
        precision, recall = precision_recall(boot[:, 0], boot[:, 1], boot[:, 2])
        return Intervals(
            *percentile_interval(precision, self.cfg.level), *percentile_interval(recall, self.cfg.level)
        )

    def summary(self) -> dict:
        """What the stored result says about its intervals."""
        return {**self.cfg.key(), "unit": self.unit, "n_groups": self.n_groups, "note": self.note}
