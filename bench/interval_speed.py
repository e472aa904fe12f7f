"""Interval speed: the bootstrap behind every grid cell's precision/recall interval (1000
resamples of 200 test speakers x 4 segments, the default settings), vectorised (one weight matrix
x per-speaker counts, core.analysis.intervals) against a naive loop that rebuilds each resample's
test set and scores it with sklearn, measured in the same run, and checked to agree.

    .venv/bin/python bench/interval_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.analysis.intervals import BootstrapConfig, BootstrapPlan, resample_indices  # noqa: E402

N_SPEAKERS, PER_SPEAKER, N_MODELS = 200, 4, 42


def naive(groups, y, pred, cfg: BootstrapConfig) -> list[float]:
    from sklearn.metrics import precision_score, recall_score

    labels = np.unique(groups)
    rows_of = [np.flatnonzero(groups == lab) for lab in labels]
    ps, rs = [], []
    for drawn in resample_indices(len(labels), cfg):
        rows = np.concatenate([rows_of[g] for g in drawn])
        ps.append(precision_score(y[rows], pred[rows], zero_division=0))
        rs.append(recall_score(y[rows], pred[rows], zero_division=0))
    a = (1 - cfg.level) / 2
    return [*np.quantile(ps, [a, 1 - a]), *np.quantile(rs, [a, 1 - a])]


def main() -> int:
    rng = np.random.default_rng(0)
    groups = np.repeat([f"spk{i:03d}" for i in range(N_SPEAKERS)], PER_SPEAKER)
    y = np.repeat(np.arange(N_SPEAKERS) % 2 == 0, PER_SPEAKER)
    hit = np.repeat(rng.uniform(0.5, 1.0, N_SPEAKERS), PER_SPEAKER)
    pred = np.where(y, rng.random(len(y)) < hit, rng.random(len(y)) < 0.15)
    cfg = BootstrapConfig()
    t = time.perf_counter()
    plan = BootstrapPlan.from_groups(groups, cfg)
    t_plan = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(N_MODELS):
        ci = plan.intervals(pred, y)
    t_vec = (time.perf_counter() - t) / N_MODELS
    t = time.perf_counter()
    ref = naive(groups, y, pred, cfg)
    t_naive = time.perf_counter() - t
    diff = float(np.max(np.abs(np.array(ci) - np.array(ref))))
    print(
        f"{N_SPEAKERS} test speakers x {PER_SPEAKER} segments, {cfg.resamples} resamples: draws "
        f"{1000 * t_plan:.1f} ms once per identification, then {1000 * t_vec:.2f} ms per model "
        f"(naive loop {1000 * t_naive:.0f} ms per model); max |difference| {diff:.1e}"
    )
    return 0 if diff < 1e-12 else 1


if __name__ == "__main__":
    raise SystemExit(main())
