"""Top-k selection of every model of a stack in one compiled pass over a CPU batch (numba).

The training fast path's selection (`SAEStack._topk_select`, and the compiled step
`core.sae.cpu_topk_step`) picks, per row and per model, the K largest of d_sae pre-activations.
torch.topk on CPU sorts small heaps per row and costs more than the encoder matmul itself at
K >= 10; this kernel does, per (row, model):

1. a threshold search from the last row's K-th value of this model (rows of one batch are
   alike): vectorised counts of the entries >= a threshold (d_sae / 16 vector compares each),
   moving by a doubling step until two thresholds' counts bracket K, then interpolating on the
   counts until K to K + K/8 entries (at least 2 more) are at or above it, usually in 3-5 counts;
2. one branch-free compaction of those entries, and the few smallest of them dropped (or a
   quickselect of the K largest where ties left many);
3. where there is no last row, or no bracket was found within 40 counts (+-inf entries, rows far
   off), the exact block path: block maxima over at least 2K strided blocks, a quickselect of the
   K largest block maxima, whose minimum has at least K entries at or above it, then as in 2.

Exact (same values as torch.topk; ties may pick other indices of equal value). On one thread, for
the paper's grid of 42 models on 1024 rows it takes 25 ms against 66 ms for the block path alone
(the counts are 12x cheaper than the compaction, so finding a tight threshold first pays). GIL-free:
a batch's rows are split over torch's thread count (`run_chunks`), and it is safe to call from
several threads (the dashboard's). Without numba, or for float64/GPU tensors, the caller falls
back to torch (`available()` says which).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor

try:  # numba is a dependency of librosa (pinned in requirements.txt); the fallback keeps torch-only use working
    from numba import njit
except ImportError:  # pragma: no cover - exercised only without numba
    njit = None

_BLOCK = 16
"""Largest block of the first level; smaller when d_sae < 2 * K * 8 so that there are >= 2K blocks."""


MIN_ROWS_PER_THREAD = 64
"""Below this many rows a thread's share of a batch does not pay for the hand-off."""

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def available() -> bool:
    return njit is not None


def threads() -> int:
    """Threads for one batch's kernels: torch's setting (OMP_NUM_THREADS), at most the cores."""
    return max(1, min(torch.get_num_threads(), os.cpu_count() or 1))


def run_chunks(fn, n: int, parts: int) -> list:
    """fn(lo, hi, part) on `parts` contiguous row ranges of range(n), results in order.

    The kernels release the GIL, so the ranges run in parallel on one pool per process (its
    workers never submit to it themselves, so it cannot deadlock)."""
    global _POOL
    if parts <= 1:
        return [fn(0, n, 0)]
    bounds = np.linspace(0, n, parts + 1).astype(np.int64)
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < parts:
            _POOL = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="voxsae-kernel")
        pool = _POOL
    futures = [pool.submit(fn, int(bounds[t]), int(bounds[t + 1]), t) for t in range(parts)]
    return [f.result() for f in futures]


if njit is not None:

    @njit(inline="always", cache=True)
    def _select_top(vals, idx, c, k):  # pragma: no cover - compiled
        """Reorder vals[:c], idx[:c] so that the k largest values come first (Hoare quickselect)."""
        lo, hi = 0, c - 1
        while lo < hi:
            pivot = vals[(lo + hi) // 2]
            i, j = lo, hi
            while i <= j:
                while vals[i] > pivot:
                    i += 1
                while vals[j] < pivot:
                    j -= 1
                if i <= j:
                    vals[i], vals[j] = vals[j], vals[i]
                    idx[i], idx[j] = idx[j], idx[i]
                    i += 1
                    j -= 1
            if k - 1 <= j:
                hi = j
            elif k - 1 >= i:
                lo = i
            else:
                break

    # The kernels index segments sliced from a row (seg = row[base:base + S]) from 0: numba then
    # knows j >= 0 and drops its negative-index wraparound, which otherwise stops LLVM from
    # vectorising the counts (12x slower at d_sae 600).

    @njit(inline="always", cache=True, boundscheck=False)
    def _count_ge(seg, thr):  # pragma: no cover - compiled
        c = 0
        for j in range(seg.shape[0]):
            c += seg[j] >= thr
        return c

    @njit(inline="always", cache=True, boundscheck=False)
    def _exact_candidates(seg, k, vals, idx):  # pragma: no cover - compiled
        """The entries of seg at or above a threshold that holds the top k (steps 1-2 of the
        module's docstring), in vals/idx; returns their count (>= k)."""
        d_sae = seg.shape[0]
        b = min(_BLOCK, d_sae // (2 * k))
        if b < 2:  # too few entries for blocks to pay: every entry is a candidate
            for j in range(d_sae):
                vals[j] = seg[j]
                idx[j] = j
            return d_sae
        # strided blocks {q, q + nb, q + 2 nb, ...}: their maxima are b vectorised passes over
        # contiguous runs of nb entries (any partition works); a tail of < nb entries is in no
        # block but still scanned below
        nb = d_sae // b
        for q in range(nb):
            vals[q] = seg[q]
        for i in range(1, b):
            s = i * nb
            for q in range(nb):
                vals[q] = max(vals[q], seg[s + q])
        _select_top(vals, idx, nb, k)
        thr = vals[0]
        for t in range(1, k):
            if vals[t] < thr:
                thr = vals[t]
        c = 0
        for j in range(d_sae):  # branch-free compaction: no mispredicts
            v = seg[j]
            vals[c] = v
            idx[c] = j
            c += v >= thr
        if c < k:  # only with NaN (no entry compares >= thr): every entry is a candidate
            for j in range(d_sae):
                vals[j] = seg[j]
                idx[j] = j
            c = d_sae
        return c

    @njit(inline="always", cache=True, boundscheck=False)
    def _bracketed_threshold(seg, k, slack, guess, step):  # pragma: no cover - compiled
        """A threshold lo with k <= count(seg >= lo) <= k + slack where the values' ties allow,
        searched from the last row's K-th value `guess`: move by a doubling `step` until two
        thresholds' counts bracket k, then interpolate on the counts. Returns (lo, its count),
        the count -1 where no bracket was found within 40 counts (rows of inf, or far off)."""
        c = _count_ge(seg, guess)
        lo, c_lo, hi, c_hi = guess, c, guess, c
        found = False
        for _ in range(40):
            if c >= k:  # lo holds >= k: move up until fewer than k remain
                t = np.float32(lo + step)
                if not (t > lo and t < np.inf):
                    break
                c = _count_ge(seg, t)
                if c < k:
                    hi, c_hi, found = t, c, True
                    break
                lo, c_lo = t, c
            else:  # hi holds < k: move down until k remain
                t = np.float32(hi - step)
                if not (t < hi and t > -np.inf):
                    break
                c = _count_ge(seg, t)
                if c >= k:
                    lo, c_lo, found = t, c, True
                    break
                hi, c_hi = t, c
            step = np.float32(step * 2.0)
        if not found:
            return lo, -1
        target = k + 0.5 * slack
        for _ in range(40):
            if c_lo <= k + slack:
                break
            f = min(0.9, max(0.1, (c_lo - target) / (c_lo - c_hi)))  # c_lo >= k > c_hi
            mid = np.float32(lo + (hi - lo) * f)  # float32: the counts compare 16 lanes at a time
            if not (mid > lo and mid < hi):  # no float left between them: ties
                break
            c = _count_ge(seg, mid)
            if c >= k:
                lo, c_lo = mid, c
            else:
                hi, c_hi = mid, c
        return lo, c_lo

    @njit(nogil=True, cache=True, boundscheck=False)
    def _segmented_topk(pre, d_sae, ks, out, out_vals):  # pragma: no cover - compiled
        n_models = ks.shape[0]
        vals = np.empty(d_sae, dtype=pre.dtype)
        idx = np.empty(d_sae, dtype=np.int64)
        guess = np.zeros(n_models, dtype=pre.dtype)  # the last row's K-th value, per model
        step = np.zeros(n_models, dtype=pre.dtype)  # how far it moves from row to row
        have = np.zeros(n_models, dtype=np.bool_)
        for r in range(pre.shape[0]):
            row = pre[r]
            col = 0
            for m in range(n_models):
                k = ks[m]
                base = m * d_sae
                seg = row[base : base + d_sae]
                c = -1
                if have[m] and k < d_sae:
                    thr, c = _bracketed_threshold(seg, k, max(2, k >> 3), guess[m], step[m])
                    if c >= 0:
                        c = 0
                        for j in range(d_sae):  # branch-free compaction: no mispredicts
                            idx[c] = j
                            c += seg[j] >= thr
                        for i in range(c):
                            vals[i] = seg[idx[i]]
                if c < 0:
                    c = _exact_candidates(seg, k, vals, idx)
                if c > k:
                    if c - k <= 3:  # a few too many: drop the smallest, one at a time
                        while c > k:
                            a = 0
                            for i in range(1, c):
                                if vals[i] < vals[a]:
                                    a = i
                            c -= 1
                            vals[a] = vals[c]
                            idx[a] = idx[c]
                    else:
                        _select_top(vals, idx, c, k)
                kth = vals[0]
                top = vals[0]
                for i in range(k):
                    out[r, col + i] = base + idx[i]
                    out_vals[r, col + i] = vals[i]
                    kth = min(kth, vals[i])
                    top = max(top, vals[i])
                if kth > -np.inf and top < np.inf:
                    floor = np.float32(1e-6) * (abs(kth) + np.float32(1e-6))
                    if have[m]:
                        step[m] = max(
                            np.float32(0.5) * step[m] + np.float32(0.5) * abs(kth - guess[m]), floor
                        )
                    else:  # a few ranks' spacing of the first row's top K
                        step[m] = max(np.float32(2.0) * (top - kth) / k, floor)
                    guess[m] = kth
                    have[m] = True
                col += k


def segmented_topk(pre: Tensor, d_sae: int, ks: list[int], values: bool = False):
    """Flat indices [N, sum(ks)] into pre [N, M * d_sae]: model m's K_m largest entries of its
    segment [m * d_sae, (m + 1) * d_sae), models in order (the layout `_topk_select` returns);
    with `values`, (indices, the pre-activations there) - read while they are in cache.

    pre must be a contiguous float32 CPU tensor without NaN (training refuses NaN input first)."""
    if not available():
        raise RuntimeError("numba is not installed")
    if pre.dtype != torch.float32 or pre.device.type != "cpu" or pre.dim() != 2:
        raise ValueError("segmented_topk takes a 2-d float32 CPU tensor")
    if pre.shape[1] != d_sae * len(ks) or not all(0 < k <= d_sae for k in ks):
        raise ValueError(
            f"pre has {pre.shape[1]} columns; expected {len(ks)} models x {d_sae} with 0 < K <= {d_sae}"
        )
    n = pre.shape[0]
    out = np.empty((n, sum(ks)), dtype=np.int64)
    out_vals = np.empty((n, sum(ks)), dtype=np.float32)
    arr, ks_arr = pre.detach().contiguous().numpy(), np.asarray(ks, dtype=np.int64)
    parts = max(1, min(threads(), n // MIN_ROWS_PER_THREAD))
    run_chunks(
        lambda lo, hi, _: _segmented_topk(arr[lo:hi], d_sae, ks_arr, out[lo:hi], out_vals[lo:hi]), n, parts
    )
    if values:
        return torch.from_numpy(out), torch.from_numpy(out_vals)
    return torch.from_numpy(out)
