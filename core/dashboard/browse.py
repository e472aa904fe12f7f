"""What the dashboard's latent browser shows, computed once per (model, corpus) and stored.

For one model, every non-zero activation over the workspace is kept as a column-compressed
(CSC) index under cache/browse/: for latent j, rows[indptr[j]:indptr[j+1]] are the segments
where it fires (ascending) and values[...] the activations. A TopK SAE with K=20 on 1.1M
segments gives 22M entries (~180 MB, memory-mapped). From that index every latent page is a
slice: density histogram, top-activating segments, quantile samples, attribute breakdown; the
latent table (density, max, mean, strongest attribute association) is computed once with
vectorised bincounts and stored beside it. Nearest latents come from decoder cosine (W_dec read
straight from the safetensors file, no torch needed).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import atomic
from core.constants import SAE_WEIGHTS_SAFETENSORS, SEGMENT_BASE_COLUMNS
from core.errors import InputError, NotFoundError
from core.sae.catalog import ModelInfo, get_model

BROWSE_CACHE = "browse"
CHUNK_ROWS = 65_536
MAX_ASSOCIATION_VALUES = 64
"""Attributes with more distinct values than this (speaker ids, ...) are not used for associations."""
SKIP_ASSOCIATION = ("split", "speaker")
BREAKDOWN_TOP_VALUES = 6
QUANTILES = (0.1, 0.3, 0.5, 0.7, 0.9)


@functools.lru_cache(maxsize=16)
def _decoder_unit(path: str, stamp: str) -> np.ndarray:
    from safetensors.numpy import load_file

    try:
        w = load_file(str(Path(path) / SAE_WEIGHTS_SAFETENSORS))["W_dec"].astype(np.float32)
    except (KeyError, OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read W_dec ({exc})") from None
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    return w / np.maximum(norms, 1e-12)


def decoder_directions(ws, model: str) -> np.ndarray:
    """Unit-norm decoder rows W_dec [d_sae, d_in]."""
    m = get_model(ws, model)
    return _decoder_unit(str(m.path), m.version)


# -- the activation index ---------------------------------------------------------------------
@dataclass(frozen=True)
class LatentIndex:
    model: str
    n_rows: int
    d_sae: int
    indptr: np.ndarray  # int64 [d_sae + 1]
    rows: np.ndarray  # int32 [nnz]
    values: np.ndarray  # float32 [nnz]
    stats: pd.DataFrame  # latent, density, max_activation, mean_activation, association columns

    def latent_slice(self, latent: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.indptr[latent]), int(self.indptr[latent + 1])
        return self.rows[a:b], self.values[a:b]

    def column(self, latent: int) -> np.ndarray:
        """Dense activations of one latent over all rows (float32 [n_rows])."""
        out = np.zeros(self.n_rows, dtype=np.float32)
        r, v = self.latent_slice(latent)
        out[r] = v
        return out


def index_dir(ws, model: ModelInfo) -> Path:
    """Where the index of `model` on what `ws` holds now is stored: keyed on the workspace content
    (fingerprint: the embeddings encoded; segments digest: the attribute columns and their names
    the latent table associates) and the model's weights."""
    from core.analysis.store import segments_digest

    content = f"{ws.fingerprint}-{segments_digest(ws)[:8]}"
    return ws.cache_dir / BROWSE_CACHE / f"{model.name}-{content}-{model.version}"


def _entries_from_sparse_codes(ws, model: str, d_sae: int, progress):
    """(rows, latents, values) of every non-zero activation, from core.sae.activations' cached codes."""
    from core.sae.activations import sparse_codes

    if progress:
        progress(0.05, "encoding segments (cached by core.sae.activations)")
    idx, val = sparse_codes(ws, model)
    if progress:
        progress(0.6, "indexing activations")
    keep = np.asarray(val) > 0
    rows = np.broadcast_to(np.arange(idx.shape[0], dtype=np.int32)[:, None], idx.shape)[keep]
    cols = np.asarray(idx)[keep].astype(np.int32, copy=False)  # copy=False: 0.8 GB each at 10M rows
    vals = np.asarray(val)[keep].astype(np.float32, copy=False)
    if cols.size and (cols.min() < 0 or cols.max() >= d_sae):
        raise InputError(f"model {model}: cached activation indices outside 0..{d_sae - 1}")
    return rows, cols, vals


def _entries_from_dense(ws, model: str, d_sae: int, get, chunk_rows: int, progress):
    """(rows, latents, values) from a function returning dense latents of row chunks."""
    n = len(ws)
    r_parts, c_parts, v_parts = [], [], []
    for start in range(0, n, chunk_rows):
        rows = np.arange(start, min(n, start + chunk_rows), dtype=np.int64)
        z = np.asarray(get(ws, model, rows), dtype=np.float32)
        if z.shape != (len(rows), d_sae):
            raise InputError(f"model {model}: latents of shape {z.shape}, expected ({len(rows)}, {d_sae})")
        rr, cc = np.nonzero(z > 0)
        r_parts.append((rr + start).astype(np.int32))
        c_parts.append(cc.astype(np.int32))
        v_parts.append(z[rr, cc].astype(np.float32))
        if progress:
            progress(min(0.9, 0.9 * (start + len(rows)) / n), f"encoding {start + len(rows)}/{n} segments")
    if not r_parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    return np.concatenate(r_parts), np.concatenate(c_parts), np.concatenate(v_parts)


def build_index(
    ws,
    model: str,
    *,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[float, str], None] | None = None,
    latents_fn: Callable | None = None,
) -> LatentIndex:
    """Encode the whole workspace (chunked), build the CSC index + latent stats, store them."""
    m = get_model(ws, model)
    n = len(ws)
    if latents_fn is None:
        r, c, v = _entries_from_sparse_codes(ws, model, m.d_sae, progress)
    else:
        r, c, v = _entries_from_dense(ws, model, m.d_sae, latents_fn, chunk_rows, progress)
    order = np.argsort(c, kind="stable")
    counts = np.bincount(c, minlength=m.d_sae)
    indptr = np.zeros(m.d_sae + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    # one array at a time, each original dropped once sorted: at 10M rows x K=20 each is 0.8 GB
    rows_sorted = r[order]
    del r
    values_sorted = v[order]
    del v
    c_sorted = c[order]
    del order, c
    if progress:
        progress(0.93, "latent statistics")
    stats = _latent_stats(ws, m.d_sae, indptr, rows_sorted, values_sorted, c_sorted=c_sorted)
    del c_sorted
    target = index_dir(ws, m)
    staging = atomic.staging_dir(target.parent, target.name)
    try:
        try:
            np.save(staging / "indptr.npy", indptr)
            np.save(staging / "rows.npy", rows_sorted)
            np.save(staging / "values.npy", values_sorted)
            stats.to_parquet(staging / "stats.parquet", index=False)
            atomic.write_json(staging / "meta.json", {"model": model, "n_rows": n, "d_sae": m.d_sae})
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except OSError as exc:
            raise atomic.write_failure(target, exc) from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if progress:
        progress(1.0, "done")
    return load_index(ws, model)


def load_index(ws, model: str) -> LatentIndex | None:
    """The stored index (memory-mapped), or None when it has not been built for this model and
    corpus, or when it is corrupt (said on stderr; building it again replaces it)."""
    m = get_model(ws, model)
    d = index_dir(ws, m)
    if not (d / "meta.json").is_file():
        return None
    try:
        meta = json.loads((d / "meta.json").read_text())
        index = LatentIndex(
            model=model,
            n_rows=int(meta["n_rows"]),
            d_sae=int(meta["d_sae"]),
            indptr=np.load(d / "indptr.npy", allow_pickle=False),
            rows=np.load(d / "rows.npy", mmap_mode="r", allow_pickle=False),
            values=np.load(d / "values.npy", mmap_mode="r", allow_pickle=False),
            stats=pd.read_parquet(d / "stats.parquet"),
        )
        _check_index(index, len(ws), m.d_sae)
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        from core.analysis.store import warn_corrupt

        warn_corrupt(d, str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__)
        return None
    return index


def _check_index(index: LatentIndex, n_rows: int, d_sae: int) -> None:
    """ValueError unless the index's arrays fit together and fit the workspace and the model."""
    nnz = int(index.indptr[-1]) if index.indptr.size else -1
    if index.n_rows != n_rows or index.d_sae != d_sae:
        raise ValueError(f"built for {index.n_rows} rows x {index.d_sae} latents, not {n_rows} x {d_sae}")
    if (
        index.indptr.shape != (d_sae + 1,)
        or index.indptr[0] != 0
        or (np.diff(index.indptr) < 0).any()
        or index.rows.shape != (nnz,)
        or index.values.shape != (nnz,)
        or len(index.stats) != d_sae
    ):
        raise ValueError("its arrays do not fit together (truncated or mixed files)")


def ensure_index(ws, model: str, **kwargs) -> LatentIndex:
    return load_index(ws, model) or build_index(ws, model, **kwargs)


def association_attributes(ws) -> list[str]:
    """Categorical metadata columns usable for associations (few distinct values). Numeric columns
    (measured F0, synthesis pitch, ...) are continuous attributes, not categories: left out."""
    from core.dashboard import segments_table

    seg = ws.segments
    out = []
    continuous = set(ws.continuous_attributes())
    for col in ws.attributes():
        if col in SKIP_ASSOCIATION or col in continuous:
            continue
        counts = segments_table.value_counts(ws, col)  # stored: no pass over every row
        nun = len(counts) if counts is not None else seg[col].nunique(dropna=True)
        if 2 <= nun <= MAX_ASSOCIATION_VALUES:
            out.append(col)
    return out


def _latent_stats(ws, d_sae, indptr, rows, values, *, c_sorted) -> pd.DataFrame:
    n = len(ws)
    counts = np.diff(indptr)
    sums = np.bincount(c_sorted, weights=values, minlength=d_sae) if len(values) else np.zeros(d_sae)
    maxes = np.zeros(d_sae, dtype=np.float32)
    if len(values):
        nz = counts > 0
        maxes[nz] = np.maximum.reduceat(np.asarray(values), indptr[:-1][nz])
    stats = pd.DataFrame(
        {
            "latent": np.arange(d_sae, dtype=np.int64),
            "density": counts / max(n, 1),
            "count": counts.astype(np.int64),
            "max_activation": maxes.astype(np.float64),
            "mean_activation": np.where(counts > 0, sums / np.maximum(counts, 1), 0.0),
        }
    )
    # strongest association: for each latent and each attribute value, F1 of (latent > 0) as a
    # detector of that value; keep the best per latent. One bincount per attribute, all latents.
    best_f1 = np.zeros(d_sae)
    best_p = np.zeros(d_sae)
    best_r = np.zeros(d_sae)
    best_name = np.array([""] * d_sae, dtype=object)
    seg = ws.segments
    for attr in association_attributes(ws):
        col = seg[attr].astype("string")
        codes, uniques = pd.factorize(col.mask(col.str.strip() == ""), use_na_sentinel=True)  # "" = no value
        nv = len(uniques)
        if nv == 0:
            continue
        codes = codes.astype(np.int64)
        totals = np.bincount(codes[codes >= 0], minlength=nv)
        ent_codes = codes[np.asarray(rows)]
        ok = ent_codes >= 0
        joint = np.bincount(c_sorted[ok] * nv + ent_codes[ok], minlength=d_sae * nv).reshape(d_sae, nv)
        prec = joint / np.maximum(counts[:, None], 1)
        rec = joint / np.maximum(totals[None, :], 1)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
        j = f1.argmax(axis=1)
        f = f1[np.arange(d_sae), j]
        better = f > best_f1
        best_f1 = np.where(better, f, best_f1)
        best_p = np.where(better, prec[np.arange(d_sae), j], best_p)
        best_r = np.where(better, rec[np.arange(d_sae), j], best_r)
        names = np.array([f"{attr}={uniques[i]}" for i in range(nv)], dtype=object)
        best_name = np.where(better, names[j], best_name)
    stats["association"] = best_name.astype(str)
    stats["association_f1"] = best_f1
    stats["association_precision"] = best_p
    stats["association_recall"] = best_r
    return stats


# -- table and page ---------------------------------------------------------------------------
def label_names(labels: dict | None, latents) -> list[str]:
    """The label name of each latent ('' where it has none); `labels`: LabelStore.for_model."""
    labels = labels or {}
    return [getattr(labels.get(int(i)), "name", "") for i in latents]


def latent_table(index: LatentIndex, labels: dict | None = None) -> pd.DataFrame:
    """The browser's table: one row per latent with its label (if any)."""
    t = index.stats.copy()
    t.insert(1, "label", label_names(labels, t["latent"]))
    return t


def filter_latents(
    table: pd.DataFrame,
    query: str = "",
    *,
    min_density_pct: float = 0.0,
    hide_dead: bool = True,
    labelled_only: bool = False,
) -> pd.DataFrame:
    """The rows of latent_table the browser shows: alive, dense enough, labelled, and matching
    `query` (in the label or the association, case-insensitive; a number also matches the id)."""
    view = table
    if hide_dead:
        view = view[view["count"] > 0]
    if min_density_pct:
        view = view[view["density"] * 100 >= float(min_density_pct)]
    if labelled_only:
        view = view[view["label"] != ""]
    if query:
        q = query.strip().lower()
        mask = view["label"].str.lower().str.contains(q, regex=False) | view[
            "association"
        ].str.lower().str.contains(q, regex=False)
        if q.isdigit():
            mask |= view["latent"] == int(q)
        view = view[mask]
    return view


@dataclass
class LatentPage:
    model: str
    latent: int
    density: float
    count: int
    max_activation: float
    histogram: pd.DataFrame  # bin_start, bin_end, count
    top: pd.DataFrame  # segment rows (metadata) + row, activation, rank
    quantiles: pd.DataFrame  # + quantile column
    breakdown: pd.DataFrame  # attribute, value, top_count, top_share, base_share, lift
    nearest: pd.DataFrame  # latent, cosine


def latent_page(
    ws,
    index: LatentIndex,
    latent: int,
    *,
    n_top: int = 10,
    per_quantile: int = 2,
    n_breakdown: int = 100,
    n_nearest: int = 8,
    bins: int = 30,
    decoder: np.ndarray | None = None,
) -> LatentPage:
    """Everything the latent's page shows; slices of the stored index, no encoding."""
    if not 0 <= int(latent) < index.d_sae:
        raise NotFoundError(f"model {index.model}: latent {latent} is out of range (0..{index.d_sae - 1})")
    latent = int(latent)
    rows, vals = index.latent_slice(latent)
    rows = np.asarray(rows)
    vals = np.asarray(vals)
    seg = ws.segments
    count = len(vals)
    if count:
        hist, edges = np.histogram(vals, bins=bins)
        histogram = pd.DataFrame({"bin_start": edges[:-1], "bin_end": edges[1:], "count": hist})
        k = min(max(n_top, n_breakdown), count)
        part = np.argpartition(-vals, k - 1)[:k] if k < count else np.arange(count)
        part = part[np.argsort(-vals[part], kind="stable")]
        top_idx = part[:n_top]
        # quantile samples: one O(n) partition for every rank needed (no full sort)
        spans = []
        for q in QUANTILES:
            centre = int(round(q * (count - 1)))
            lo = max(0, min(centre - per_quantile // 2, count - per_quantile))
            spans.append((q, lo, min(count, lo + per_quantile)))
        ranks = sorted({r for _, lo, hi in spans for r in range(lo, hi)})
        ap = np.argpartition(vals, ranks) if count > 1 else np.arange(count)
        q_idx = [ap[lo:hi] for _, lo, hi in spans]
        q_of = np.concatenate([np.full(len(ix), q) for (q, _, _), ix in zip(spans, q_idx, strict=True)])
        # one take from the (large) segment table for everything shown: cheap on 1M+ rows
        b_idx = part[:n_breakdown]
        pos = np.concatenate([top_idx, *q_idx, b_idx])
        frame = _segment_frame(seg, rows[pos], vals[pos])
        n_q = sum(len(ix) for ix in q_idx)
        top = frame.iloc[: len(top_idx)].reset_index(drop=True)
        top.insert(0, "rank", np.arange(1, len(top) + 1))
        quantiles = frame.iloc[len(top_idx) : len(top_idx) + n_q].reset_index(drop=True)
        quantiles.insert(0, "quantile", q_of)
        quantiles = quantiles.drop_duplicates("row").reset_index(drop=True)
        breakdown = _breakdown(ws, frame.iloc[len(top_idx) + n_q :])
    else:
        histogram = pd.DataFrame({"bin_start": [], "bin_end": [], "count": []})
        top = _segment_frame(seg, np.zeros(0, np.int64), np.zeros(0, np.float32))
        quantiles = top.copy()
        breakdown = pd.DataFrame(
            columns=["attribute", "value", "top_count", "top_share", "base_share", "lift"]
        )
    if decoder is not None and decoder.shape[0] == index.d_sae:
        cos = decoder @ decoder[latent]
        cos[latent] = -np.inf
        kk = min(n_nearest, index.d_sae - 1)
        near = np.argpartition(-cos, kk - 1)[:kk] if kk > 0 else np.zeros(0, np.int64)
        near = near[np.argsort(-cos[near])]
        nearest = pd.DataFrame({"latent": near.astype(np.int64), "cosine": cos[near].astype(float)})
    else:
        nearest = pd.DataFrame({"latent": [], "cosine": []})
    return LatentPage(
        model=index.model,
        latent=latent,
        density=count / max(index.n_rows, 1),
        count=count,
        max_activation=float(vals.max()) if count else 0.0,
        histogram=histogram,
        top=top,
        quantiles=quantiles,
        breakdown=breakdown,
        nearest=nearest,
    )


def _segment_frame(seg: pd.DataFrame, rows: np.ndarray, vals: np.ndarray) -> pd.DataFrame:
    f = seg.iloc[np.asarray(rows, dtype=np.int64)].reset_index(drop=True)
    f.insert(0, "activation", np.asarray(vals, dtype=np.float64))
    f.insert(0, "row", np.asarray(rows, dtype=np.int64))
    return f


def _breakdown(ws, sub: pd.DataFrame) -> pd.DataFrame:
    """Attribute value shares among the rows of `sub` (segment rows) against the whole corpus."""
    seg = ws.segments
    base = getattr(ws, "_voxsae_base_rates", None)
    if base is None:
        attrs = association_attributes(ws)
        if "speaker" in seg.columns:
            attrs.append("speaker")
        base = {}
        from core.dashboard import segments_table

        for a in attrs:
            # stored by dashboard-cache where the server reads its table from the copy (2 s a
            # server start at 10M rows); counted first, blank values dropped after: the strip
            # runs over the distinct values, not over every row; the same shares
            counts = segments_table.value_counts(ws, a)
            if counts is None:
                counts = seg[a].astype("string").value_counts(dropna=True)
            counts = counts[counts.index.str.strip() != ""]
            base[a] = counts / max(int(counts.sum()), 1)
        ws._voxsae_base_rates = base
    out = []
    for attr, rates in base.items():
        vals = sub[attr].astype("string")
        vc = vals[vals.str.strip() != ""].value_counts(dropna=True)
        total = max(int(vc.sum()), 1)
        shown = vc.head(BREAKDOWN_TOP_VALUES)
        base_of = _rates_of(rates, shown.index)
        for value, cnt in shown.items():
            b = base_of.get(value, 0.0)
            share = cnt / total
            out.append(
                {
                    "attribute": attr,
                    "value": str(value),
                    "top_count": int(cnt),
                    "top_share": share,
                    "base_share": b,
                    "lift": share / b if b > 0 else np.nan,
                }
            )
    return pd.DataFrame(out, columns=["attribute", "value", "top_count", "top_share", "base_share", "lift"])


def _rates_of(rates: pd.Series, values: pd.Index) -> dict:
    """{value: rates[value]} of the few `values` present in `rates`' index, by one vectorised
    membership pass over that index: a lookup by label would first build a hash index of all of
    it (0.3 s once per server for a million speakers, on the first latent page)."""
    hit = rates.index.isin(values)
    return {str(v): float(r) for v, r in zip(rates.index[hit], rates.to_numpy()[hit], strict=True)}


def metadata_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of a segment frame worth showing beside a player."""
    skip = {*SEGMENT_BASE_COLUMNS, "row", "rank", "activation", "quantile"}
    keep = ["segment_id", *[c for c in frame.columns if c not in skip]]
    return [c for c in keep if c in frame.columns]


def metadata_parts(row: pd.Series, columns) -> list[str]:
    """'column: `value`' for each of `columns` that is not empty in this segment row."""
    return [f"{k}: `{row[k]}`" for k in columns if pd.notna(row[k]) and str(row[k]).strip()]


def segment_caption(row: pd.Series, columns, quantile: bool = False) -> str:
    """The line beside a segment's player on a latent page: (quantile,) activation, metadata, time."""
    head = f"**{row['activation']:.3f}**"
    if quantile:
        head = f"q{int(round(row['quantile'] * 100))} · " + head
    return " · ".join([head, *metadata_parts(row, columns), f"{row['start_s']:.1f}-{row['end_s']:.1f} s"])
