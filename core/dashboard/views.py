"""Glue between the stored analyses and the dashboard pages: which labelled tasks exist, the
steering view (signed slider, chosen samples, long-form frames for the charts) and probing a clip.

The analyses themselves live in core.analysis.datasets / identification / grid / splitting / steering /
suggestions; this module only finds, reshapes and combines their results for display.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.constants import FEATURES_SUBDIR
from core.errors import InputError, NotFoundError


@dataclass(frozen=True)
class Task:
    """A labelled feature dataset: attribute, positive value, negative values."""

    attribute: str
    positive: str
    negatives: tuple[str, ...]

    @property
    def title(self) -> str:
        return f"{self.attribute}: {self.positive} vs {' + '.join(self.negatives)}"


DEFAULT_TASKS = (Task("language", "es", ("en",)), Task("class", "music", ("voice",)))


def defined_tasks(ws) -> list[Task]:
    """Tasks with a saved feature dataset (what `analyze` ran), else the defaults the workspace has."""
    out: list[Task] = []
    folder = ws.analyses_dir / FEATURES_SUBDIR
    if folder.is_dir():
        for p in sorted(folder.glob("*.json")):
            try:
                raw = json.loads(p.read_text())
                t = Task(str(raw["attribute"]), str(raw["positive"]), tuple(str(v) for v in raw["negatives"]))
            except (ValueError, KeyError, TypeError):
                continue
            if t not in out:
                out.append(t)
    order = {t: i for i, t in enumerate(DEFAULT_TASKS)}
    out.sort(key=lambda t: (order.get(t, len(order)), t.title))  # the paper's tasks first
    if not out:
        cols = ws.segments.columns
        for t in DEFAULT_TASKS:
            if t.attribute in cols:
                values = set(ws.segments[t.attribute].dropna().astype(str))
                if t.positive in values and set(t.negatives) <= values:
                    out.append(t)
    return out


# -- grid -------------------------------------------------------------------------------------
def grids(ws) -> list[tuple[Task, pd.DataFrame]]:
    """Every stored precision/recall grid with its task."""
    from core.analysis.grid import load_grid

    out = []
    for t in defined_tasks(ws):
        try:
            df = load_grid(ws, t.attribute, t.positive, list(t.negatives))
        except (NotFoundError, InputError):
            continue
        if df is not None and not df.empty:
            out.append((t, df))
    return out


def grid_cell_chart(df: pd.DataFrame, metric: str, *, arch: str | None = None, name: str = "cell"):
    """core.analysis.grid's heatmap with a point selection on its cells (click -> model + latent)."""
    import altair as alt

    from core.analysis.grid import grid_heatmap

    chart = grid_heatmap(df, metric, arch=arch)
    sel = alt.selection_point(name=name, fields=["model", "latent"], on="click", clear="dblclick")
    layers = list(chart.layer)
    layers[0] = (
        layers[0]
        .add_params(sel)
        .encode(
            opacity=alt.condition(sel, alt.value(1.0), alt.value(0.55)),
        )
    )
    return alt.layer(*layers, data=chart.data).properties(
        title=chart.title,
        width="container",
        height=chart.height,
        # Streamlit's default autosize ('fit') collapses discrete axes to zero height; fit the width
        # of the column only, keep the height Altair computed from the rows
        autosize=alt.AutoSizeParams(type="fit-x", contains="padding"),
    )


def selected_cell(event, name: str = "cell") -> tuple[str, int] | None:
    """(model, latent) of a clicked heatmap cell from st.altair_chart's selection state."""
    if event is None:
        return None
    sel = getattr(event, "selection", None)
    if sel is None and isinstance(event, dict):
        sel = event.get("selection")
    if not sel:
        return None
    points = sel.get(name) if isinstance(sel, dict) else getattr(sel, name, None)
    if not points:
        return None
    p = points[0] if isinstance(points, list) else points
    try:
        return str(p["model"]), int(p["latent"])
    except (KeyError, TypeError, ValueError):
        return None


# -- steering ---------------------------------------------------------------------------------
def steering_session(ws, model: str, task: Task):
    """core.analysis.steering's session for (model, task): encodes the task's rows once."""
    from core.analysis.datasets import FeatureDataset
    from core.analysis.models import find_model
    from core.analysis.steering import SteeringSession

    ds = FeatureDataset.load_or_build(ws, task.attribute, task.positive, list(task.negatives))
    session = SteeringSession.build(ws, find_model(ws, model), ds)
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


MAX_DIST_POINTS = 4000
"""At most this many samples (seeded subsample) go into the distribution chart; means use all."""


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


# -- probe a clip -------------------------------------------------------------------------------
@dataclass
class ProbeResult:
    embedding: np.ndarray  # float32 [dim]
    latents: pd.DataFrame  # latent, activation, label, association
    nearest: pd.DataFrame  # segment rows + cosine


def embed_clip(ws, audio: np.ndarray) -> np.ndarray:
    """Embed 16 kHz mono audio with the workspace's own embedder -> float32 [dim]."""
    from core.embedders import get_embedder

    if ws.embedder not in _known_embedders():
        raise InputError(
            f"workspace {ws.name} was made with embedder {ws.embedder!r}, which cannot embed new audio here"
        )
    emb = get_embedder(ws.embedder)
    out = np.asarray(emb.embed([np.asarray(audio, dtype=np.float32)]), dtype=np.float32)[0]
    if out.shape[0] != ws.dim:
        raise InputError(f"embedder {ws.embedder} gives {out.shape[0]}-d embeddings, workspace has {ws.dim}")
    return out


def _known_embedders() -> set[str]:
    from core.embedders import EMBEDDERS

    return set(EMBEDDERS)


NEAREST_CHUNK_ROWS = 131_072


def _embedding_chunks(ws, chunk_rows: int = NEAREST_CHUNK_ROWS):
    """(start, float32 [n, dim]) chunks of embeddings.npy read with plain file reads, not the
    memory map: a full scan then does not leave 1 GB of mapped pages resident in the server."""
    from core.constants import EMBEDDINGS_NPY

    path = ws.root / EMBEDDINGS_NPY
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        shape, fortran, dtype = readers[version](fh) if version in readers else ((), True, None)
        if fortran or len(shape) != 2 or dtype != np.float32:
            x = np.asarray(ws.embeddings, dtype=np.float32)  # unusual layout: fall back to the map
            for a in range(0, x.shape[0], chunk_rows):
                yield a, np.asarray(x[a : a + chunk_rows])
            return
        n, dim = shape
        for a in range(0, n, chunk_rows):
            m = min(chunk_rows, n - a)
            yield a, np.fromfile(fh, dtype=np.float32, count=m * dim).reshape(m, dim)


def _row_norms(ws) -> np.ndarray:
    cached = getattr(ws, "_voxsae_row_norms", None)
    if cached is None:
        cached = np.empty(len(ws), dtype=np.float32)
        for a, x in _embedding_chunks(ws):
            cached[a : a + len(x)] = np.linalg.norm(x, axis=1)
        ws._voxsae_row_norms = cached
    return cached


def nearest_rows(
    ws, query: np.ndarray, k: int, exclude_row: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cosines) of the k catalogue segments nearest to `query` by cosine, best first."""
    q = np.asarray(query, dtype=np.float32).ravel()
    q = q / max(float(np.linalg.norm(q)), 1e-12)
    norms = _row_norms(ws)
    cos = np.empty(len(ws), dtype=np.float32)
    for a, x in _embedding_chunks(ws):
        cos[a : a + len(x)] = x @ q
    cos /= np.maximum(norms, 1e-12)
    if exclude_row is not None:
        cos[int(exclude_row)] = -np.inf
    k = min(k, len(cos))
    near = np.argpartition(-cos, k - 1)[:k]
    near = near[np.argsort(-cos[near])]
    return near.astype(np.int64), cos[near].astype(float)


def probe_embedding(
    ws,
    model: str,
    embedding: np.ndarray,
    *,
    labels: dict | None = None,
    stats: pd.DataFrame | None = None,
    n_nearest: int = 8,
    exclude_row: int | None = None,
) -> ProbeResult:
    """Active latents (with labels and associations) and nearest catalogue segments of one embedding."""
    from core.analysis.models import find_model, open_sae
    from core.sae.activations import encode_array

    e = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
    if e.shape[1] != ws.dim:
        raise InputError(f"embedding of dim {e.shape[1]}, workspace {ws.name} has {ws.dim}")
    z = np.asarray(encode_array(open_sae(find_model(ws, model)), e), dtype=np.float32)[0]
    active = np.flatnonzero(z > 0)
    active = active[np.argsort(-z[active])]
    labels = labels or {}
    lat = pd.DataFrame(
        {
            "latent": active.astype(np.int64),
            "activation": z[active].astype(float),
            "label": [getattr(labels.get(int(i)), "name", "") for i in active],
        }
    )
    if stats is not None and "association" in stats.columns:
        lat["association"] = stats["association"].to_numpy()[active]
        lat["density"] = stats["density"].to_numpy()[active]
    near, near_cos = nearest_rows(ws, e[0], n_nearest, exclude_row)
    nearest = ws.segments.iloc[near].reset_index(drop=True)
    nearest.insert(0, "cosine", near_cos)
    nearest.insert(0, "row", near.astype(np.int64))
    return ProbeResult(embedding=e[0], latents=lat, nearest=nearest)


# -- command: python -m core dashboard-cache ------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--workspace", default=None, help="workspace name or path (default: demo)")
    parser.add_argument("--no-umap", action="store_true", help="skip the 2-D map")


def main(args) -> int:
    """Build every model's latent index and the UMAP map (each only when missing)."""
    from tqdm import tqdm

    from core.constants import DEFAULT_WORKSPACE
    from core.dashboard.browse import ensure_index
    from core.dashboard.projection import load_projection, projection_path
    from core.sae.catalog import list_models
    from core.workspace.workspace import Workspace

    ws = Workspace.open(args.workspace or DEFAULT_WORKSPACE)
    models = list_models(ws)
    for m in tqdm(models, desc="latent indexes", unit="model"):
        ensure_index(ws, m.name)
    print(f"latent indexes of {len(models)} model(s): {ws.cache_dir / 'browse'}")
    if not args.no_umap:
        if load_projection(ws) is None:
            from core.dashboard.projection import compute_projection

            bar = tqdm(total=100, desc="UMAP", unit="%")

            def step(frac: float, text: str) -> None:
                bar.set_postfix_str(text)
                bar.update(max(0, int(frac * 100) - bar.n))

            compute_projection(ws, progress=step)
            bar.close()
        print(f"UMAP map: {projection_path(ws)}")
    return 0
