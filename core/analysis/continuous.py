"""`python -m core continuous --workspace W [--attribute A] [--model M] [--model-workspace W2] [--json]`:
how an SAE encodes a continuous attribute (pitch, loudness, rate, ...), and whether it bins it
(paper V-D: "It is possible that binning occurs").

Rows: the analysed segments (core.analysis.suggestions.suggestion_rows: the `feature` split when
the workspace has one, else every segment; the SAEs trained on the `sae` split, so the analysis
reads held-out speakers like identification does), where the attribute is finite (a music segment
has no F0). Per latent, vectorised over latents on the sparse codes of the activation cache
(core.analysis.models.encode_rows):

* spearman: Spearman correlation of its activation with the attribute over all those rows (an
  inactive row has activation 0, tied); spearman_active: over the rows where it fires;
* the binning test: the attribute cut into ContinuousSettings.n_bins quantile bins; per latent the
  share of its activation in each bin (mean activation of the bin, so bins of unequal size from
  tied values weigh alike), the shortest contiguous bin range holding >= mass_share of it
  (range_lo, range_hi in attribute units; mass_in_range), and mi: the mutual information (bits)
  between the bin and its activation (off, or one of ACTIVATION_LEVELS quantile levels of its
  active values);
* a latent is concentrated when it fires on >= MIN_ACTIVE_ROWS rows, its range spans at most
  MAX_RANGE_FRACTION of the bins and it fires on >= MIN_RANGE_FIRING of the rows inside its range;
  binning holds when two or more concentrated latents have disjoint ranges ordered along the
  attribute (neighbours may share the SHARED_BINS bin a boundary falls in) that together cover
  >= MIN_COVER of the bins (the set covering most bins is chosen; ties: the larger summed mi).

    res = continuous(ws, "topk-L200-K20", "f0_median_hz")     # computed or reused: ContinuousResult
    res.latents                                               # DataFrame, one row per live latent
    res.binning, res.binning_latents                          # the verdict, its latents by range
    load_continuous(ws, model, attribute)                     # stored result, None when absent/stale
    analysed_attributes(ws, attribute=None)                   # the attributes a run covers
    continuous_chart(res, activation_points(ws, res))         # the figure (Altair)

Stored in the one result store (analyses/continuous/<model>~<attribute>.json), keyed on the
model's weights, the workspace content, a hash of the attribute's values on the analysed rows and
the settings, so a changed input never returns an old result.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from core.analysis.store import ResultStore
from core.constants import SEGMENT_BASE_COLUMNS
from core.errors import InputError, NotFoundError
from core.workspace.workspace import Workspace

KIND = "continuous"  # analyses/continuous/
_VERSION = 2  # 2: the speaker control

MIN_ROWS = 30
"""Fewest finite values an attribute needs on the analysed rows: 10 quantile bins of fewer than
3 rows each say nothing."""
MIN_DISTINCT = 5
"""Fewest distinct values an attribute needs on the analysed rows. With fewer, the quantile bins
are the values themselves (k values give at most k - 1 bins; two values a single bin, where no
latent can be concentrated and the test answers nothing), and a latent per value is a categorical
code, which `identify` measures."""
MIN_ACTIVE_SPEARMAN = 5
"""Fewest active rows for spearman_active: a rank correlation over fewer is noise."""
MIN_ACTIVE_ROWS = 10
"""Fewest active rows for a latent to count as concentrated: a latent firing on a handful of rows
is concentrated in a few bins by chance."""
MAX_RANGE_FRACTION = 0.5
"""A concentrated latent's range spans at most this share of the bins. A latent rising linearly
with the attribute needs ~60 % of the bins for 80 % of its mass, so it is not a bin."""
MIN_RANGE_FIRING = 0.25
"""A concentrated latent fires on at least this share of the rows inside its range: it encodes
that sub-range, not a rare property that happens to sit there."""
SHARED_BINS = 1
"""Neighbouring ranges may share this many bins and still count as disjoint: a boundary between
two bin latents that falls inside a quantile bin puts that bin in both their 80 % ranges."""
MIN_COVER = 0.6
"""Binning holds when the disjoint ranges cover at least this share of the bins ("span most of
the range"): two narrow bins at the ends are not a binned code of the whole attribute."""
ACTIVATION_LEVELS = 3
"""The active values of a latent are cut into this many quantile levels for mi (plus 'off')."""
TOP_SHOWN = 10
SHOWN_COLUMNS = (
    "latent",
    "n_active",
    "spearman",
    "spearman_active",
    "range_lo",
    "range_hi",
    "mass_in_range",
    "mi",
)
"""The latent table's columns the report and the Continuous page show."""


@dataclass(frozen=True)
class ContinuousSettings:
    """What the binning test is computed with (part of the stored result's key)."""

    n_bins: int = 10
    """Quantile bins the attribute is cut into (fewer when tied values make edges coincide)."""
    mass_share: float = 0.8
    """Share of a latent's activation mass its contiguous range must hold."""


class ContinuousResult(NamedTuple):
    """One model x attribute."""

    model: str
    attribute: str
    rows_from: str
    """Which segments were analysed: 'feature split' or 'all segments'."""
    n_rows: int
    """Analysed rows where the attribute is finite."""
    edges: list[float]
    """Bin edges in attribute units (len = bins + 1)."""
    latents: pd.DataFrame
    """One row per latent active on an analysed row, best mi first: latent, n_active, spearman,
    spearman_active, bin_lo, bin_hi, range_lo, range_hi, mass_in_range, firing_in_range, mi,
    concentrated (spearman* NaN where undefined)."""
    binning: bool
    binning_latents: list[int]
    """The disjoint concentrated latents the verdict rests on, ordered along the attribute."""
    cover: float
    """Share of the bins their ranges cover."""
    control_binning: bool | None = None
    """The same test on the speaker control (speaker_control: each speaker's values moved to
    another speaker's mean); None without a speaker column. Binning that vanishes on the control
    is between speakers (latents of groups of voices, ordered by their own attribute values);
    binning that stays follows the attribute within speakers too."""
    control_latents: list[int] = []
    """The control's binning latents."""

    def json_rows(self) -> list[dict]:
        """The `--json` rows: one per latent, then the verdict."""
        head = {"model": self.model, "attribute": self.attribute}
        rows = [
            {
                **head,
                "latent": int(r.latent),
                "spearman": _num(r.spearman),
                "spearman_active": _num(r.spearman_active),
                "range_lo": _num(r.range_lo),
                "range_hi": _num(r.range_hi),
                "mass_in_range": _num(r.mass_in_range),
                "mi": _num(r.mi),
            }
            for r in self.latents.itertuples()
        ]
        return rows + [{**head, "binning": bool(self.binning), "latents": list(self.binning_latents)}]

    def control_text(self) -> str:
        """'speaker control: binning no' (or '' without a speaker column)."""
        if self.control_binning is None:
            return ""
        return f"speaker control: binning {'yes' if self.control_binning else 'no'}"

    def verdict(self) -> str:
        """One line: binning or not, and on what."""
        n_bins = len(self.edges) - 1
        if self.binning:
            by = self.latents.set_index("latent")
            parts = [
                f"latent {j} [{_fmt(by.at[j, 'range_lo'])}, {_fmt(by.at[j, 'range_hi'])}]"
                for j in self.binning_latents
            ]
            return (
                f"binning: yes, {len(parts)} latents cover disjoint ordered sub-ranges of "
                f"{self.attribute} ({100 * self.cover:.0f}% of {n_bins} bins): " + ", ".join(parts)
            )
        n_conc = int(self.latents["concentrated"].sum()) if len(self.latents) else 0
        best = (
            self.latents.iloc[self.latents["spearman"].abs().fillna(-1).argmax()]
            if len(self.latents)
            else None
        )
        tracks = (
            f"; strongest monotone latent {int(best.latent)} (spearman {best.spearman:+.2f})"
            if best is not None and np.isfinite(best.spearman)
            else ""
        )
        return (
            f"binning: no, {n_conc} concentrated latent(s), disjoint ranges cover "
            f"{100 * self.cover:.0f}% of {n_bins} bins (needs >= 2 latents and >= {100 * MIN_COVER:.0f}%)"
            + tracks
        )

    def top(self, n: int = TOP_SHOWN) -> pd.DataFrame:
        """The binning latents first (in order), then the best mi."""
        lat = self.latents
        chosen = lat.set_index("latent").loc[self.binning_latents].reset_index()
        rest = lat[~lat["latent"].isin(self.binning_latents)]
        return pd.concat([chosen, rest], ignore_index=True).head(max(n, len(chosen)))


def _num(v):
    v = float(v)
    return v if np.isfinite(v) else None


def _fmt(v) -> str:
    return f"{float(v):.4g}"


# -- the numbers ---------------------------------------------------------------------------------
def group_ranks(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` within each group (ties: the average rank), in input order."""
    n = len(values)
    if n == 0:
        return np.zeros(0)
    order = np.lexsort((values, groups))
    g, v = groups[order], values[order]
    pos = np.arange(n)
    new_group = np.r_[True, g[1:] != g[:-1]]
    start = np.maximum.accumulate(np.where(new_group, pos, 0))
    new_run = new_group | np.r_[True, v[1:] != v[:-1]]
    first = pos[new_run]
    last = np.r_[first[1:] - 1, n - 1]
    run = np.cumsum(new_run) - 1
    out = np.empty(n)
    out[order] = (first[run] + last[run]) / 2.0 - start + 1.0
    return out


def _pearson_sums(n, sx, sy, sxx, syy, sxy) -> np.ndarray:
    """Pearson from sums (arrays over latents); NaN where a side has no variance."""
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = sxy - sx * sy / n
        vx, vy = sxx - sx**2 / n, syy - sy**2 / n
        # a side without variance (all tied) leaves float round-off relative to its sum of squares
        ok = (vx > 1e-12 * np.maximum(sxx, 1.0)) & (vy > 1e-12 * np.maximum(syy, 1.0)) & (n > 1)
        rho = np.where(ok, cov / np.sqrt(np.where(ok, vx * vy, 1.0)), np.nan)
    return np.clip(rho, -1.0, 1.0)


def spearman_columns(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, attr: np.ndarray, d: int):
    """(spearman over all n rows [d], spearman over each latent's active rows [d], n_active [d]) of
    the sparse activations (rows, cols, vals > 0) against attr [n]; O(nnz log nnz), no dense matrix."""
    from scipy.stats import rankdata

    n = len(attr)
    m = np.bincount(cols, minlength=d).astype(np.float64)
    # over all rows: an inactive row has activation 0, the lowest value, all tied
    r_attr = rankdata(attr)
    s_active = (n - m[cols]) + group_ranks(cols, vals)
    r0 = (n - m + 1) / 2.0
    r_at = r_attr[rows]
    sum_r_active = np.bincount(cols, weights=r_at, minlength=d)
    sum_s = r0 * (n - m) + np.bincount(cols, weights=s_active, minlength=d)
    sum_ss = r0**2 * (n - m) + np.bincount(cols, weights=s_active**2, minlength=d)
    sum_sr = r0 * (r_attr.sum() - sum_r_active) + np.bincount(cols, weights=s_active * r_at, minlength=d)
    nn = np.full(d, float(n))
    rho_all = _pearson_sums(
        nn, sum_s, np.full(d, r_attr.sum()), sum_ss, np.full(d, (r_attr**2).sum()), sum_sr
    )
    # over each latent's active rows: both sides ranked within the latent
    x, y = group_ranks(cols, vals), group_ranks(cols, attr[rows])

    def s(w):
        return np.bincount(cols, weights=w, minlength=d)

    rho_act = _pearson_sums(m, s(x), s(y), s(x * x), s(y * y), s(x * y))
    rho_act[m < MIN_ACTIVE_SPEARMAN] = np.nan
    return rho_all, rho_act, m.astype(np.int64)


def quantile_bins(attr: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(edges [B + 1], bin of each value [n]): edges are values of attr (a bin holds [edge, next edge),
    the last one both ends); coinciding quantile edges (tied values) merge bins."""
    edges = np.unique(np.quantile(attr, np.linspace(0.0, 1.0, n_bins + 1), method="inverted_cdf"))
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0]])
    which = np.searchsorted(edges[1:-1], attr, side="right")
    return edges, which


class BinStats(NamedTuple):
    bin_lo: np.ndarray
    bin_hi: np.ndarray
    mass_in_range: np.ndarray
    firing_in_range: np.ndarray
    mi: np.ndarray


def bin_statistics(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, which: np.ndarray, n_bins: int, d: int, share: float
) -> BinStats:
    """Per latent: the shortest contiguous bin range holding >= `share` of its activation mass,
    that share, the share of the range's rows it fires on, and mi (bits; module docstring)."""
    b = which[rows]
    pop = np.bincount(which, minlength=n_bins).astype(np.float64)
    n = pop.sum()
    mass = np.bincount(cols * n_bins + b, weights=vals, minlength=d * n_bins).reshape(d, n_bins)
    fired = np.bincount(cols * n_bins + b, minlength=d * n_bins).reshape(d, n_bins).astype(np.float64)
    mean = mass / np.maximum(pop, 1.0)
    total = mean.sum(axis=1, keepdims=True)
    p = np.divide(mean, total, out=np.zeros_like(mean), where=total > 0)
    cum = np.concatenate([np.zeros((d, 1)), np.cumsum(p, axis=1)], axis=1)
    lo = np.zeros(d, np.int64)
    width = np.full(d, n_bins, np.int64)
    got = np.zeros(d)
    todo = np.ones(d, bool)
    for w in range(1, n_bins + 1):  # the shortest window first; for a width, the heaviest window
        win = cum[:, w:] - cum[:, :-w]
        best = win.argmax(axis=1)
        hit = todo & (win[np.arange(d), best] >= share - 1e-9)
        lo[hit], width[hit], got[hit] = best[hit], w, win[hit, best[hit]]
        todo &= ~hit
    hi = lo + width - 1
    cum_pop = np.r_[0.0, np.cumsum(pop)]
    cum_fired = np.concatenate([np.zeros((d, 1)), np.cumsum(fired, axis=1)], axis=1)
    ar = np.arange(d)
    in_rows = cum_pop[hi + 1] - cum_pop[lo]
    firing = (cum_fired[ar, hi + 1] - cum_fired[ar, lo]) / np.maximum(in_rows, 1.0)
    # mi between the bin and the activation level (0 = off, 1..L = quantile level of active values)
    m = np.bincount(cols, minlength=d).astype(np.float64)
    level = 1 + np.minimum(
        ((group_ranks(cols, vals) - 0.5) / np.maximum(m[cols], 1.0) * ACTIVATION_LEVELS).astype(np.int64),
        ACTIVATION_LEVELS - 1,
    )
    n_lv = ACTIVATION_LEVELS + 1
    joint = np.bincount((cols * n_lv + level) * n_bins + b, minlength=d * n_lv * n_bins).reshape(
        d, n_lv, n_bins
    )
    joint = joint.astype(np.float64)
    joint[:, 0, :] = pop[None, :] - joint[:, 1:, :].sum(axis=1)
    pj = joint / n
    p_lv = pj.sum(axis=2, keepdims=True)
    p_b = (pop / n)[None, None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pj > 0, pj * np.log2(pj / (p_lv * p_b)), 0.0)
    mi = np.maximum(terms.sum(axis=(1, 2)), 0.0)
    return BinStats(lo, hi, got, firing, mi)


def ordered_cover(bin_lo, bin_hi, mi, candidates: np.ndarray) -> tuple[list[int], int]:
    """(the candidate latents whose bin ranges are ordered along the attribute, neighbours sharing
    at most SHARED_BINS bin, that cover the most bins (ties: the larger summed mi), in order;
    the bins they cover)."""
    best_of: dict[tuple[int, int], int] = {}
    for j in np.flatnonzero(candidates):
        key = (int(bin_lo[j]), int(bin_hi[j]))
        if key not in best_of or mi[j] > mi[best_of[key]]:
            best_of[key] = int(j)
    spans = sorted(best_of)
    # chain[i]: (bins covered, summed mi, latents) of the best chain ending with spans[i]
    chain: list[tuple[int, float, list[int]]] = []
    for i, (lo, hi) in enumerate(spans):
        j = best_of[(lo, hi)]
        best = (hi - lo + 1, float(mi[j]), [j])
        for p, (plo, phi) in enumerate(spans[:i]):
            shared = phi - lo + 1
            if plo < lo and phi < hi and shared <= SHARED_BINS:
                cov, s, chosen = chain[p]
                best = max(best, (cov + hi - lo + 1 - max(shared, 0), s + float(mi[j]), [*chosen, j]))
        chain.append(best)
    if not chain:
        return [], 0
    cov, _, chosen = max(chain, key=lambda c: (c[0], c[1]))
    return chosen, cov


def analyse(
    rows: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    attr: np.ndarray,
    d: int,
    settings: ContinuousSettings,
) -> tuple[pd.DataFrame, list[float], list[int], float]:
    """(latents table, bin edges, binning latents, cover) of sparse activations (rows, cols, vals)
    of d latents over n = len(attr) rows against the attribute values attr."""
    rho, rho_act, m = spearman_columns(rows, cols, vals, attr, d)
    edges, which = quantile_bins(attr, settings.n_bins)
    n_bins = len(edges) - 1
    st = bin_statistics(rows, cols, vals, which, n_bins, d, settings.mass_share)
    width = st.bin_hi - st.bin_lo + 1
    concentrated = (
        (m >= MIN_ACTIVE_ROWS)
        & (width <= MAX_RANGE_FRACTION * n_bins)
        & (st.firing_in_range >= MIN_RANGE_FIRING)
    )
    chosen, covered = ordered_cover(st.bin_lo, st.bin_hi, st.mi, concentrated)
    cover = covered / n_bins
    frame = pd.DataFrame(
        {
            "latent": np.arange(d),
            "n_active": m,
            "spearman": rho,
            "spearman_active": rho_act,
            "bin_lo": st.bin_lo,
            "bin_hi": st.bin_hi,
            "range_lo": edges[st.bin_lo],
            "range_hi": edges[st.bin_hi + 1],
            "mass_in_range": st.mass_in_range,
            "firing_in_range": st.firing_in_range,
            "mi": st.mi,
            "concentrated": concentrated,
        }
    )
    frame = frame[frame["n_active"] > 0].sort_values(["mi", "latent"], ascending=[False, True], kind="stable")
    return frame.reset_index(drop=True), edges.tolist(), chosen, cover


# -- the workspace side --------------------------------------------------------------------------------
def _store(ws, model_workspace) -> ResultStore:
    return ResultStore(ws, model_workspace)


def _rows_from(ws: Workspace, rows: np.ndarray) -> str:
    return "feature split" if len(rows) < len(ws) else "all segments"


def check_attribute(ws: Workspace, attribute: str) -> None:
    """NotFoundError / InputError unless `attribute` is one of ws's continuous attributes."""
    cont = ws.continuous_attributes()
    listed = f"continuous attributes: {', '.join(cont) or 'none'}"
    if attribute in SEGMENT_BASE_COLUMNS:
        raise InputError(
            f"workspace {ws.name}: {attribute!r} is a segment column, not an attribute ({listed})"
        )
    if attribute not in ws.segments.columns:
        raise NotFoundError(f"workspace {ws.name}: no attribute {attribute!r} ({listed})")
    if attribute not in cont:
        dtype = ws.segments[attribute].dtype
        raise InputError(
            f"workspace {ws.name}: attribute {attribute!r} is not numeric (it holds {dtype} values), so it "
            f"has no continuum to bin ({listed}; `identify` analyses categories)"
        )


def attribute_values(ws: Workspace, attribute: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(workspace rows analysed, the attribute there as float64, where they come from); InputError
    when fewer than MIN_ROWS are finite, or the attribute is constant there or takes fewer than
    MIN_DISTINCT values."""
    from core.analysis.suggestions import suggestion_rows

    check_attribute(ws, attribute)
    rows = suggestion_rows(ws)
    where = _rows_from(ws, rows)
    values = pd.to_numeric(ws.segments[attribute].iloc[rows], errors="coerce").to_numpy(
        np.float64, na_value=np.nan
    )
    finite = np.isfinite(values)
    if finite.sum() < MIN_ROWS:
        raise InputError(
            f"workspace {ws.name}: attribute {attribute!r} has {int(finite.sum())} finite value(s) among the "
            f"{len(rows)} analysed segments ({where}); the binning test needs at least {MIN_ROWS}"
        )
    rows, values = rows[finite], values[finite]
    if values.min() == values.max():
        raise InputError(
            f"workspace {ws.name}: attribute {attribute!r} is constant ({values[0]:g}) on the {len(rows)} "
            f"analysed segments ({where}): nothing to correlate"
        )
    distinct = np.unique(values)
    if len(distinct) < MIN_DISTINCT:
        shown = ", ".join(f"{v:g}" for v in distinct)
        raise InputError(
            f"workspace {ws.name}: attribute {attribute!r} takes {len(distinct)} distinct values ({shown}) on "
            f"the {len(rows)} analysed segments ({where}): too few to bin (the binning test needs at least "
            f"{MIN_DISTINCT}); a category: `identify` analyses it"
        )
    return rows, values, where


def _safe(attribute: str) -> str:
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in attribute)
    if safe != attribute or len(safe) > 80:
        safe = safe[:60] + "-" + hashlib.sha1(attribute.encode()).hexdigest()[:10]
    return safe


def result_name(model: str, attribute: str) -> str:
    return f"{model}~{_safe(attribute)}"


def _inputs(store: ResultStore, ref, attribute, rows, values, settings: ContinuousSettings) -> dict:
    digest = hashlib.sha256(rows.astype(np.int64).tobytes() + values.astype(np.float64).tobytes()).hexdigest()
    return store.inputs(
        [ref], attribute=attribute, values=digest[:16], settings=asdict(settings), version=_VERSION
    )


def _from_stored(out: dict) -> ContinuousResult:
    frame = pd.DataFrame(out["latents"])
    if len(frame):
        for col in ("spearman", "spearman_active"):
            frame[col] = frame[col].astype(float)
    else:
        frame = pd.DataFrame(columns=_COLUMNS)
    return ContinuousResult(
        model=out["model"],
        attribute=out["attribute"],
        rows_from=out["rows_from"],
        n_rows=int(out["n_rows"]),
        edges=[float(e) for e in out["edges"]],
        latents=frame,
        binning=bool(out["binning"]),
        binning_latents=[int(j) for j in out["binning_latents"]],
        cover=float(out["cover"]),
        control_binning=(
            None if out.get("speaker_control") is None else bool(out["speaker_control"]["binning"])
        ),
        control_latents=[int(j) for j in (out.get("speaker_control") or {}).get("binning_latents", [])],
    )


_COLUMNS = [
    "latent",
    "n_active",
    "spearman",
    "spearman_active",
    "bin_lo",
    "bin_hi",
    "range_lo",
    "range_hi",
    "mass_in_range",
    "firing_in_range",
    "mi",
    "concentrated",
]


def _prepare(ws, model, attribute, model_workspace, settings):
    from core.analysis.models import find_model

    store = _store(ws, model_workspace)
    ref = find_model(store.ws, model, store.model_ws)
    rows, values, where = attribute_values(store.ws, attribute)
    return store, ref, rows, values, where, _inputs(store, ref, attribute, rows, values, settings)


def load_continuous(
    ws, model: str, attribute: str, *, model_workspace=None, settings: ContinuousSettings | None = None
) -> ContinuousResult | None:
    """The stored result; None when never computed or when any input changed since."""
    settings = settings or ContinuousSettings()
    store, ref, *_, inputs = _prepare(ws, model, attribute, model_workspace, settings)
    out = store.load_json(KIND, result_name(ref.name, attribute), inputs)
    return None if out is None else _from_stored(out)


def activations(ws: Workspace, ref, rows: np.ndarray):
    """Sparse (row positions into `rows`, latent, value) of the model's codes on `rows`."""
    from core.analysis.models import encode_rows

    z = encode_rows(ws, ref, rows)
    r, c = np.nonzero(z > 0)
    return r.astype(np.int64), c.astype(np.int64), z[r, c].astype(np.float64)


def continuous(
    ws,
    model: str,
    attribute: str,
    *,
    model_workspace=None,
    settings: ContinuousSettings | None = None,
    force: bool = False,
) -> ContinuousResult:
    """One model x attribute (module docstring); stored, reused while nothing changed."""
    settings = settings or ContinuousSettings()
    store, ref, rows, values, where, inputs = _prepare(ws, model, attribute, model_workspace, settings)
    name = result_name(ref.name, attribute)
    stored = None if force else store.load_json(KIND, name, inputs)
    if stored is not None:
        return _from_stored(stored)
    r, c, v = activations(store.ws, ref, rows)
    frame, edges, chosen, cover = analyse(r, c, v, values, ref.d_sae, settings)
    control = None
    if "speaker" in store.ws.segments.columns:
        speakers = store.ws.segments["speaker"].iloc[rows].astype(str).to_numpy()
        _, _, c_chosen, c_cover = analyse(r, c, v, speaker_control(values, speakers), ref.d_sae, settings)
        control = {"binning": _holds(c_chosen, c_cover), "binning_latents": [int(j) for j in c_chosen]}
    result = {
        "version": _VERSION,
        "model": ref.name,
        "attribute": attribute,
        "rows_from": where,
        "n_rows": len(rows),
        "edges": edges,
        "latents": json.loads(frame.to_json(orient="records")),
        "binning": _holds(chosen, cover),
        "binning_latents": [int(j) for j in chosen],
        "cover": cover,
        "speaker_control": control,
    }
    return _from_stored(store.save_json(KIND, name, result, inputs))


def _holds(chosen: list[int], cover: float) -> bool:
    return bool(len(chosen) >= 2 and cover >= MIN_COVER - 1e-9)


CONTROL_SEED = 0


def speaker_control(values: np.ndarray, speakers: np.ndarray, seed: int = CONTROL_SEED) -> np.ndarray:
    """The attribute with each speaker's mean replaced by another speaker's (a seeded permutation of
    the speaker means; deviations within a speaker kept). Speakers stay as separable as before but
    their place along the attribute is random. Latents that detect groups of voices ordered by
    their attribute lose their order on it (the binning vanishes); latents that follow the
    attribute within a speaker keep it."""
    ids, group = np.unique(speakers, return_inverse=True)
    means = np.bincount(group, weights=values, minlength=len(ids)) / np.bincount(group, minlength=len(ids))
    moved = np.random.default_rng(seed).permutation(len(ids))
    return values - means[group] + means[moved][group]


def analysed_attributes(ws: Workspace, attribute: str | None = None) -> list[str]:
    """[attribute] checked, or every continuous attribute; InputError when there is none."""
    if attribute is not None:
        check_attribute(ws, attribute)
        return [attribute]
    cont = ws.continuous_attributes()
    if not cont:
        raise InputError(
            f"workspace {ws.name} has no continuous attributes (numeric metadata columns such as "
            "f0_median_hz: ingest measures them, import-embeddings keeps numeric metadata columns)"
        )
    return cont


def run_all(ws, *, attribute=None, model=None, model_workspace=None, force=False, warn=print):
    """ContinuousResult of every (model, attribute) asked for. Without --attribute an attribute
    unusable on the analysed rows (too few finite values, constant) is skipped with a warning;
    named, or when none is usable, it is the error."""
    from core.analysis.models import find_model, list_model_refs

    store = _store(ws, model_workspace)
    attrs = analysed_attributes(store.ws, attribute)
    if model is not None:
        refs = [find_model(store.ws, model, store.model_ws)]
    else:
        refs = list_model_refs(store.ws, store.model_ws)
        if not refs:
            raise NotFoundError(
                f"workspace {store.model_ws.name}: no trained models (run `python -m core train` first)"
            )
    usable, reasons = [], []
    for a in attrs:
        try:
            attribute_values(store.ws, a)
        except InputError as exc:
            if attribute is not None:
                raise
            reasons.append(str(exc))
            warn(f"warning: skipped: {exc}")
            continue
        usable.append(a)
    if not usable:
        raise InputError("no continuous attribute can be analysed: " + "; ".join(reasons))
    return [
        continuous(store.ws, r.name, a, model_workspace=model_workspace, force=force)
        for r in refs
        for a in usable
    ]


# -- the figure ------------------------------------------------------------------------------------
CHART_LATENTS = 6
"""Latents drawn in the figure (the binning latents first, then the best mi)."""
CHART_POINTS = 4000
"""Most points drawn per figure (a seeded sample beyond it, so an HTML report stays small)."""


def activation_points(
    ws, res: ContinuousResult, *, model_workspace=None, n_latents: int = CHART_LATENTS
) -> pd.DataFrame:
    """segment_id, the attribute value, latent, activation: every analysed row where one of the
    figure's latents (ContinuousResult.top) fires, at most CHART_POINTS of them."""
    from core.analysis.models import find_model

    store = _store(ws, model_workspace)
    ref = find_model(store.ws, res.model, store.model_ws)
    rows, values, _ = attribute_values(store.ws, res.attribute)
    shown = [int(j) for j in res.top(n_latents)["latent"]]
    r, c, v = activations(store.ws, ref, rows)
    keep = np.isin(c, shown)
    r, c, v = r[keep], c[keep], v[keep]
    if len(r) > CHART_POINTS:
        pick = np.sort(np.random.default_rng(0).choice(len(r), CHART_POINTS, replace=False))
        r, c, v = r[pick], c[pick], v[pick]
    ids = store.ws.segments["segment_id"].astype(str).to_numpy()
    return pd.DataFrame(
        {
            "segment_id": ids[rows[r]],
            "value": values[r],
            "latent": c.astype(int),
            "activation": v.astype(float),
        }
    )


def continuous_chart(res: ContinuousResult, points: pd.DataFrame):
    """Altair: activation against the attribute for the figure's latents, one colour each, with
    each latent's 80 % range as a band above the points, ordered along the attribute (the bins,
    if any, show as ordered bands)."""
    import altair as alt

    lat = res.top(CHART_LATENTS)
    order = [str(int(j)) for j in lat.sort_values(["range_lo", "range_hi"])["latent"]]
    pts = points.assign(latent=points["latent"].astype(int).astype(str))
    bands = lat.assign(
        latent=lat["latent"].astype(int).astype(str),
        binning=lat["latent"].isin(res.binning_latents).map({True: "binning latent", False: "other"}),
    )[["latent", "range_lo", "range_hi", "mass_in_range", "mi", "binning"]]
    color = alt.Color("latent:N", sort=order, title="latent")
    x_title = res.attribute
    scatter = (
        alt.Chart(pts)
        .mark_circle(size=14, opacity=0.5)
        .encode(
            x=alt.X("value:Q", title=x_title, scale=alt.Scale(zero=False)),
            y=alt.Y("activation:Q", title="activation"),
            color=color,
            tooltip=[
                "segment_id",
                "latent",
                alt.Tooltip("value:Q", format=".4g"),
                alt.Tooltip("activation:Q", format=".3f"),
            ],
        )
        .properties(width=640, height=260)
    )
    ranges = (
        alt.Chart(bands)
        .mark_bar(height=10)
        .encode(
            x=alt.X("range_lo:Q", title=x_title, scale=alt.Scale(zero=False)),
            x2="range_hi:Q",
            y=alt.Y("latent:N", sort=order, title="80 % range"),
            color=color,
            opacity=alt.condition("datum.binning == 'binning latent'", alt.value(1.0), alt.value(0.35)),
            tooltip=[
                "latent",
                "range_lo",
                "range_hi",
                alt.Tooltip("mass_in_range:Q", format=".0%"),
                alt.Tooltip("mi:Q", format=".3f"),
            ],
        )
        .properties(width=640, height=18 * max(len(bands), 1))
    )
    title = f"{res.model}: {res.attribute} ({'binning' if res.binning else 'no binning'})"
    return alt.vconcat(ranges, scatter, title=title).resolve_scale(x="shared", color="shared")


# -- the report's section ------------------------------------------------------------------------------
QUESTION = "Continuous attributes: is there binning?"


def report_attributes(ws: Workspace) -> list[str]:
    """The attributes the report answers for: the measured ones present, else every continuous one."""
    from core.constants import MEASURED_ATTRIBUTES

    cont = ws.continuous_attributes()
    return [a for a in MEASURED_ATTRIBUTES if a in cont] or cont


def report_section(ws, focus: str, models: list[str]) -> tuple[dict | None, dict]:
    """(the report's section: per attribute the focus model's verdict, top latents and how many of
    `models` bin it; the figures by id), through the store. None when the workspace has no
    continuous attribute; an attribute unusable on the analysed rows is listed with why."""
    attrs = report_attributes(Workspace.of(ws))
    if not attrs:
        return None, {}
    sec: dict = {"question": QUESTION, "model": focus, "attributes": [], "skipped": []}
    charts: dict = {}
    for a in attrs:
        try:
            res = continuous(ws, focus, a)
            others = [res if m == focus else continuous(ws, m, a) for m in models]
        except InputError as exc:
            sec["skipped"].append(f"{a}: {exc}")
            continue
        binning = [r.model for r in others if r.binning]
        control = [r.model for r in others if r.control_binning]
        has_control = res.control_binning is not None
        control_text = (
            f"; on the speaker control (speaker means permuted) in {len(control)} of {len(others)}"
            if has_control
            else ""
        )
        top = res.top(5)
        sec["attributes"].append(
            {
                "attribute": a,
                "binning": res.binning,
                "binning_latents": res.binning_latents,
                "n_rows": res.n_rows,
                "rows_from": res.rows_from,
                "models_binning": binning,
                "models_binning_control": control if has_control else None,
                "n_models": len(others),
                "reading": f"{focus}: {res.verdict()}; binning holds in {len(binning)} of {len(others)} models"
                + control_text,
                "top": json.loads(top[list(SHOWN_COLUMNS)].to_json(orient="records")),
            }
        )
        charts[f"continuous-{a}"] = continuous_chart(res, activation_points(ws, res))
    done = sec["attributes"]
    yes = [x["attribute"] for x in done if x["binning"]]
    # the speaker control tells binning between speakers (it vanishes when the speakers' means are
    # permuted: latents of voice groups ordered by the attribute) from binning within speakers
    between = [x["attribute"] for x in done if x["binning"] and x["models_binning_control"] is not None
               and len(x["models_binning_control"]) < len(x["models_binning"]) / 2]  # fmt: skip
    controlled = any(x["models_binning_control"] is not None for x in done)
    sec["answer"] = (
        (
            f"{focus} bins {', '.join(yes)} ({len(yes)} of {len(done)} attributes)"
            + (
                f"; between speakers only (the binning vanishes in most models when the speakers' means are "
                f"permuted): {', '.join(between) or 'none'}"
                if controlled
                else ""
            )
            if yes
            else f"no binning in {focus} for any of {len(done)} attributes"
        )
        if done
        else "no continuous attribute could be analysed"
    )
    sec["between_speakers_only"] = between if controlled else None
    return sec, charts


# -- command ---------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--workspace", required=True, help="workspace name or path")
    parser.add_argument("--attribute", default=None, help="one continuous attribute (default: every one)")
    parser.add_argument("--model", default=None, help="one model (default: every usable model)")
    parser.add_argument("--model-workspace", default=None, help="analyse with the SAEs of this workspace")
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")
    parser.add_argument("--force", action="store_true", help="recompute even if the stored result is fresh")


def text_lines(res: ContinuousResult) -> list[str]:
    lines = [
        f"{res.model} / {res.attribute}: {res.n_rows} segments ({res.rows_from}), {len(res.edges) - 1} "
        f"quantile bins {_fmt(res.edges[0])} .. {_fmt(res.edges[-1])}",
        f"  {res.verdict()}",
        *([f"  {res.control_text()}"] if res.control_text() else []),
        f"  {'latent':>6} {'active':>6} {'spearman':>8} {'sp.active':>9} {'range':>23} {'mass':>5} {'mi':>6}",
    ]
    for r in res.top().itertuples():
        rng = f"[{_fmt(r.range_lo)}, {_fmt(r.range_hi)}]"
        sp_act = "n/a" if not np.isfinite(r.spearman_active) else f"{r.spearman_active:+.3f}"
        sp = "n/a" if not np.isfinite(r.spearman) else f"{r.spearman:+.3f}"
        mark = "*" if r.latent in res.binning_latents else " "
        lines.append(
            f" {mark}{int(r.latent):>6} {int(r.n_active):>6} {sp:>8} {sp_act:>9} {rng:>23} "
            f"{100 * r.mass_in_range:>4.0f}% {r.mi:>6.3f}"
        )
    return lines


def main(args) -> int:
    from core.analysis.models import warn_unusable_models

    ws = Workspace.open(args.workspace)
    warn_unusable_models(ws, args.model_workspace)

    def warn(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = run_all(
        ws,
        attribute=args.attribute,
        model=args.model,
        model_workspace=args.model_workspace,
        force=args.force,
        warn=warn,
    )
    if args.json:
        for res in results:
            for row in res.json_rows():
                print(json.dumps(row))
        return 0
    for res in results:
        print("\n".join(text_lines(res)))
    print(f"stored under {_store(ws, args.model_workspace).path(KIND, '').parent}")
    return 0
