"""The splitting page's data: the stored splitting analysis (core.analysis.splitting) of every
task, the architectures and K it tracks, and the detected splits at one (architecture, K)."""

from __future__ import annotations

import pandas as pd

from core.dashboard.tasks import defined_tasks
from core.errors import VoxSAEError


def stored_results(ws) -> dict[str, dict]:
    """Task title -> its stored splitting analysis, for every task that has one."""
    from core.analysis.splitting import load_splitting

    out = {}
    for t in defined_tasks(ws):
        try:
            res = load_splitting(ws, t.attribute, t.positive, list(t.negatives))
        except VoxSAEError:
            continue
        if res is not None:
            out[t.title] = res
    return out


def architectures(tracks: pd.DataFrame) -> tuple[list[str], str | None]:
    """(the tracked architectures, sorted; the one shown first: topk when tracked)."""
    archs = sorted(tracks["arch"].dropna().unique()) if not tracks.empty else []
    return archs, ("topk" if "topk" in archs else (archs[0] if archs else None))


def k_choices(res: dict, tracks: pd.DataFrame, arch: str | None) -> tuple[list[int], int | None]:
    """(the K tracked for `arch`, sorted; the one shown first: the analysis's default K)."""
    from core.analysis.splitting import default_k

    ks = sorted({int(k) for k in tracks[tracks["arch"] == arch]["k"].dropna()}) if arch else []
    k0 = default_k(res)
    return ks, (k0 if k0 in ks else (ks[0] if ks else None))


def splits_at(res: dict, arch: str | None, k: int | None) -> pd.DataFrame:
    """Every detected split (one row per child) among the models of `arch` with this K."""
    from core.analysis.splitting import splits_frame

    sf = splits_frame(res)
    if sf.empty or not arch:
        return sf
    return sf[(sf["arch"] == arch) & ((sf["k"] == k) if k is not None else True)]


def child_options(splits: pd.DataFrame) -> dict[str, tuple[str, int]]:
    """'model latent j (captures)' -> (model, j) for every child of splits_at."""
    return {
        f"{r.large_model} latent {int(r.child)} ({r.captures})": (r.large_model, int(r.child))
        for r in splits.itertuples()
    }
