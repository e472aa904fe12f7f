"""A latent's matches in the other SAEs, for the latent page (core.analysis.universality's stored
comparisons; nothing is computed here).

    latent_matches(ws, model, latent) -> DataFrame, one row per other SAE it was compared with:
        model, workspace, latent (its one-to-one match; <NA> for an extra latent of the larger
        SAE), correlation, decoder_cosine (NaN where the two SAEs read different embedding
        spaces), best_latent, best_correlation (its most correlated latent there, which a split
        feature may make another one), link

Found: the comparisons stored in `ws` (this model as M1, or as M2 of a comparison within `ws`),
and those stored in the other workspaces of the same data folder that took this model from `ws`
(`universality --model-workspace ws`, files named `...@<ws name>.json`). Only fresh comparisons
count (core.analysis.universality.load_universality: a changed workspace, model or
identification makes one stale). Matching a model with itself is not a match in another SAE.

`link` is the latent page's query string ("latents?ws=...&model=...&latent=..."), the view the
dashboard's URL holds (pages/common.py PAGE_PARAMS).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pandas as pd

from core.analysis.store import ResultStore
from core.analysis.universality import KIND, load_universality
from core.errors import VoxSAEError
from core.workspace.workspace import Workspace

COLUMNS = [
    "model",
    "workspace",
    "latent",
    "correlation",
    "decoder_cosine",
    "best_latent",
    "best_correlation",
    "link",
]

DTYPES = {
    "latent": "Int64",
    "correlation": "float64",
    "decoder_cosine": "float64",
    "best_latent": "Int64",
    "best_correlation": "float64",
}
"""Missing values (no one-to-one partner, no decoder cosine) are <NA> / NaN."""


def latent_link(workspace: str, model: str, latent: int) -> str:
    """The latent page of `latent` of `model` in `workspace`, as the dashboard's URL has it."""
    return "latents?" + urlencode({"ws": workspace, "model": model, "latent": int(latent)})


def _comparisons(ws: Workspace):
    """(file, workspace of M1, workspace of M2 or None: the one the file records) of every stored
    comparison that may hold a model of `ws`. A file sits in the analyses of its M1's workspace
    and ends in '@<name>' when M2 is of another one; the workspaces come from where the file is,
    so a copied workspace checks its results against itself."""
    for path in sorted((ws.analyses_dir / KIND).glob("*.json")):
        yield path, ws, (None if "@" in path.stem else ws)
    for path in sorted(ws.root.parent.glob(f"*/analyses/{KIND}/*@{ws.name}.json")):
        owner = path.parents[2]
        if owner.resolve() != ws.root.resolve():
            yield path, owner, ws


def _fresh(path: Path, ws_a, ws_b, reader: ResultStore) -> tuple[dict, Workspace, Workspace] | None:
    """(the comparison stored at `path`, its two workspaces) while it is fresh, else None."""
    stored = reader.read_json(path)
    try:
        ws_a = Workspace.of(ws_a)
        ws_b = Workspace(stored["b"]["workspace_root"]) if ws_b is None else Workspace.of(ws_b)
        res = load_universality(ws_a, stored["a"]["model"], stored["b"]["model"], model_workspace=ws_b)
    except (VoxSAEError, KeyError, TypeError, OSError):  # not a comparison, or a workspace or model gone
        return None
    return None if res is None else (res, ws_a, ws_b)


def latent_matches(ws: Workspace | str, model: str, latent: int) -> pd.DataFrame:
    """The matches of `latent` of `model` (of `ws`) in every SAE it was compared with (module doc)."""
    ws = Workspace.of(ws)
    root = ws.root.resolve()
    reader = ResultStore(ws)
    rows = []
    for path, ws_a, ws_b in _comparisons(ws):
        found = _fresh(path, ws_a, ws_b, reader)
        if found is None:
            continue
        res, ws_a, ws_b = found
        a, b = res["a"], res["b"]
        here_a = ws_a.root.resolve() == root and a["model"] == model
        here_b = ws_b.root.resolve() == root and b["model"] == model
        if here_a == here_b:  # not this model, or this model matched with itself
            continue
        other, other_ws, mine, theirs, best = (
            (b, ws_b, "latent_a", "latent_b", res["best_a"])
            if here_a
            else (a, ws_a, "latent_b", "latent_a", res["best_b"])
        )
        if not 0 <= int(latent) < len(best):
            continue
        # the larger SAE's extra latents have no partner in the one-to-one assignment
        pair = next((p for p in res["pairs"] if p[mine] == int(latent)), None)
        best_latent, best_corr = best[int(latent)]
        rows.append(
            {
                "model": other["model"],
                "workspace": other_ws.name,
                "latent": None if pair is None else int(pair[theirs]),
                "correlation": None if pair is None else float(pair["correlation"]),
                "decoder_cosine": None if pair is None else pair["decoder_cosine"],
                "best_latent": int(best_latent),
                "best_correlation": float(best_corr),
                "link": latent_link(other_ws.name, other["model"], pair[theirs] if pair else best_latent),
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS).astype(DTYPES)
    return frame.sort_values("best_correlation", ascending=False, kind="stable").reset_index(drop=True)
