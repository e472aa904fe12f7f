"""A 2-D UMAP of a workspace's embeddings, computed once and stored under cache/.

The map is keyed by the workspace fingerprint (a hash of the embeddings it is computed from, the
segment ids and the metadata), so a changed corpus gets a new one; pages only
ever *load* it (load_projection). It is computed by `python -m core dashboard-cache` (which
`make demo` runs), or from the dashboard with an explicit button and a progress bar.
Big workspaces are subsampled (seeded) to MAX_POINTS rows: the map is for looking, and a
scatter of a million points helps nobody.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import atomic
from core.errors import InputError

MAX_POINTS = 20_000
"""At most this many segments are projected (seeded random subsample beyond it)."""
SEED = 0


@dataclass(frozen=True)
class Projection:
    rows: np.ndarray
    """int64 [n]: workspace row of each point (sorted)."""
    coords: np.ndarray
    """float32 [n, 2]: UMAP coordinates."""


def projection_path(ws) -> Path:
    return ws.cache_dir / f"umap-{ws.fingerprint}.npz"


def load_projection(ws) -> Projection | None:
    """The stored map, or None when it has not been computed for this corpus, or when the file is
    corrupt (said on stderr; computing the map again replaces it)."""
    path = projection_path(ws)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            proj = Projection(rows=z["rows"].astype(np.int64), coords=z["coords"].astype(np.float32))
        n = len(proj.rows)
        if proj.coords.shape != (n, 2) or (n and not 0 <= proj.rows.min() <= proj.rows.max() < len(ws)):
            raise ValueError(
                f"{n} rows and coords of shape {proj.coords.shape} do not fit {len(ws)} segments"
            )
    except (OSError, ValueError, KeyError, EOFError) as exc:
        from core.analysis.store import warn_corrupt

        warn_corrupt(path, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
        return None
    return proj


def sample_rows(n: int, max_points: int = MAX_POINTS, seed: int = SEED) -> np.ndarray:
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False)).astype(np.int64)


def compute_projection(
    ws,
    *,
    max_points: int = MAX_POINTS,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    progress: Callable[[float, str], None] | None = None,
) -> Projection:
    """Fit UMAP (cosine metric) on a subsample of the embeddings and store it atomically."""
    n = len(ws)
    if n < 4:
        raise InputError(f"workspace {ws.name}: {n} segment(s) are too few for a 2-D map")
    if progress:
        progress(0.05, f"sampling {min(n, max_points)} of {n} segments")
    rows = sample_rows(n, max_points)
    x = np.asarray(ws.embeddings[rows], dtype=np.float32)
    if progress:
        progress(0.15, "loading umap-learn")
    import umap  # slow import (numba): only here, never on page load

    if progress:
        progress(0.25, f"fitting UMAP on {len(rows)} points")
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=int(min(n_neighbors, max(2, len(rows) - 1))),
        min_dist=min_dist,
        metric="cosine",
        random_state=SEED,
        n_jobs=1,
        init="spectral" if len(rows) > 50 else "random",
    )
    coords = reducer.fit_transform(x).astype(np.float32)
    if progress:
        progress(0.95, "saving")
    proj = save_projection(ws, rows, coords)
    if progress:
        progress(1.0, "done")
    return proj


def save_projection(ws, rows: np.ndarray, coords: np.ndarray) -> Projection:
    """Store a map (rows [n] into the workspace, coords [n, 2]) atomically."""
    rows = np.asarray(rows, dtype=np.int64)
    coords = np.asarray(coords, dtype=np.float32)
    if coords.shape != (len(rows), 2):
        raise InputError(f"projection: coords of shape {coords.shape}, expected ({len(rows)}, 2)")
    with atomic.atomic_path(projection_path(ws)) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, rows=rows, coords=coords)
    return Projection(rows=rows, coords=coords)


def ensure_projection(ws, **kwargs) -> Projection:
    """The stored map, computing it first when missing (for `analyze` and the demo)."""
    return load_projection(ws) or compute_projection(ws, **kwargs)


def activation_map(proj: Projection, activations: np.ndarray) -> pd.DataFrame:
    """The map's points coloured by one latent: x, y, activation (of `activations`, dense over the
    workspace's rows), row; ordered by activation so the active points are drawn on top."""
    frame = pd.DataFrame(
        {
            "x": proj.coords[:, 0],
            "y": proj.coords[:, 1],
            "activation": np.asarray(activations)[proj.rows],
            "row": proj.rows,
        }
    )
    return frame.iloc[np.argsort(frame["activation"].to_numpy(), kind="stable")]
