"""The TopK stack's training step on a CPU batch in compiled kernels (numba): decode, loss and every
gradient of the M models, in three passes whose work is split over torch's threads.

Why: the autograd path (`SAEStack.losses` + backward) builds a dozen [N, M, d_in] / [N, sum K]
intermediates and sorts every active entry twice for its scatter-adds; on 2 cores the grid's step
cost about 10x its encoder matmul. Here (v_j = relu(pre[n, c_j]) over the TopK picks c_j; only
entries with v_j > 0 count):

1. rows over threads: recon = b_dec[m] + sum_j v_j W_dec[c_j] (four decoder rows per pass over
   recon), e = recon - x[n] kept in err[m, n], sse[m] += |e|^2, and a count of every latent's
   active rows;
2. rows over threads: a counting sort of the active entries by latent;
3. latents over threads (split by their entries): with g = 2 e / (N scale), for each latent c over
   the rows it is active in (four at a time),
       dW_dec[c] = sum v g;  dpre = g . W_dec[c];  dW_enc[:, c] = sum dpre x[n];  db[c] = sum dpre.
   A latent's two gradient rows stay in L1 while its entries stream through them and are written
   once; no thread shares a gradient row, so nothing is summed after.

The passes are bound by loads and stores of 192-float rows, not by multiply-adds: on one thread,
per active entry, about 25 ns forward and 50 ns backward (the row-major scatter this replaced took
about 200). Where a model has dead latents and the batch's residual has variance, the AuxK pass
(rows over threads, each with its own accumulators) does the same for the dead latents'
reconstruction of the residual -e (weight coef * 2 / (N var)). The encoder's bias is
b_enc - b_dec @ W_enc, so its gradient db reaches b_enc, b_dec and W_enc (W_enc's share in pass 3).

The autograd path stays the reference (and the path for GPUs, float64 and the other architectures):
tests/sae check losses and every gradient against it. The kernels release the GIL; threads come from
one pool per process sized by torch's thread count.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from core.sae.base import auxk_ratio
from core.sae.cpu_topk import available, run_chunks, segmented_topk, threads

try:  # numba comes with librosa (requirements.txt); without it `usable` says no
    from numba import njit
except ImportError:  # pragma: no cover - exercised only without numba
    njit = None

MIN_ROWS_PER_THREAD = 64
"""Below this many rows a thread's share does not pay for its gradient buffers."""


def usable(stack, x: Tensor) -> bool:
    """Whether the fused step can train this stack on batch x (CPU float32 TopK, numba present)."""
    return (
        available()
        and stack.impl.compiled_cpu_step
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and stack.W_enc.dtype == torch.float32
        and x.dim() == 2
        and x.shape[0] > 0
    )


if njit is not None:

    @njit(inline="always", cache=True, fastmath=True, boundscheck=False)
    def _add_scaled(r, v, row):  # pragma: no cover - compiled
        """r += v * row (one active latent's decoder row into a reconstruction)."""
        for t in range(r.shape[0]):
            r[t] += v * row[t]

    @njit(inline="always", cache=True, fastmath=True, boundscheck=False)
    def _backward_entry(c, v, g, xn, w_dec, g_wdec, g_wenc_t, g_b):  # pragma: no cover - compiled
        """One active entry (latent c, value v > 0) of a row whose reconstruction has gradient g:
        dW_dec[c] += v g; dpre = g . W_dec[c]; dW_enc^T[c] += dpre x[n]; db[c] += dpre."""
        wc = w_dec[c]
        gw = g_wdec[c]
        dot = np.float32(0.0)
        for t in range(g.shape[0]):
            gw[t] += v * g[t]
            dot += g[t] * wc[t]
        ge = g_wenc_t[c]
        for t in range(g.shape[0]):
            ge[t] += dot * xn[t]
        g_b[c] += dot

    @njit(nogil=True, cache=True, fastmath=True, boundscheck=False)
    def _forward_rows(
        lo, hi, x, vals, idx, bag_start, w_dec, b_dec, err, sse, e_sum, n_active
    ):  # pragma: no cover
        """Rows lo..hi, every model: err[m, n] = recon - x[n]; sse[m] += |e|^2; e_sum[m] += e;
        n_active[c] += 1 for each latent c active (value > 0) in a row."""
        n_models, d = b_dec.shape
        act = np.empty(idx.shape[1], dtype=np.int64)
        act_v = np.empty(idx.shape[1], dtype=np.float32)
        for m in range(n_models):  # model-major: one model's W_dec rows stay in cache over the rows
            j0, j1 = bag_start[m], bag_start[m + 1]
            bm = b_dec[m]
            es = e_sum[m]
            for n in range(lo, hi):
                r = err[m, n]
                xn = x[n]
                a = 0
                for j in range(j0, j1):
                    v = vals[n, j]
                    if v > 0:
                        c = idx[n, j]
                        act[a] = c
                        act_v[a] = v
                        a += 1
                        n_active[c] += 1
                for t in range(d):
                    r[t] = bm[t]
                # four decoder rows per pass over r: the pass is bound by its loads and stores
                # of r, not by its multiply-adds (the last pass repeats the last row, weight 0)
                last = a - 1
                i = 0
                while i < a:
                    i2, i3, i4 = min(i + 1, last), min(i + 2, last), min(i + 3, last)
                    w1, w2, w3, w4 = w_dec[act[i]], w_dec[act[i2]], w_dec[act[i3]], w_dec[act[i4]]
                    v1 = act_v[i]
                    v2 = act_v[i2] * np.float32(i + 1 < a)
                    v3 = act_v[i3] * np.float32(i + 2 < a)
                    v4 = act_v[i4] * np.float32(i + 3 < a)
                    for t in range(d):
                        r[t] += v1 * w1[t] + v2 * w2[t] + v3 * w3[t] + v4 * w4[t]
                    i += 4
                s = np.float32(0.0)
                for t in range(d):
                    e = r[t] - xn[t]
                    r[t] = e
                    s += e * e
                    es[t] += e
                sse[m] += s

    @njit(nogil=True, cache=True, boundscheck=False)
    def _fill_entries(lo, hi, vals, idx, pos, ent_row, ent_col):  # pragma: no cover - compiled
        """Counting sort, second pass: rows lo..hi's active entries into their latents' runs
        (pos[c]: where this thread's next entry of latent c goes); rows stay in order in a run."""
        for n in range(lo, hi):
            vrow = vals[n]
            irow = idx[n]
            for j in range(vrow.shape[0]):
                if vrow[j] > 0:
                    c = irow[j]
                    p = pos[c]
                    ent_row[p] = n
                    ent_col[p] = j
                    pos[c] = p + 1

    @njit(inline="always", cache=True, fastmath=True, boundscheck=False)
    def _dot4(e1, e2, e3, e4, w):  # pragma: no cover - compiled
        """Four rows' dot products with w in one pass (w is loaded once for the four)."""
        s1 = s2 = s3 = s4 = np.float32(0.0)
        for t in range(w.shape[0]):
            wt = w[t]
            s1 += e1[t] * wt
            s2 += e2[t] * wt
            s3 += e3[t] * wt
            s4 += e4[t] * wt
        return s1, s2, s3, s4

    @njit(nogil=True, cache=True, fastmath=True, boundscheck=False)
    def _backward_latents(
        c_lo,
        c_hi,
        d_sae,
        x,
        vals,
        err,
        run_start,
        ent_row,
        ent_col,
        w_dec,
        b_dec,
        g_scale,
        g_wdec,
        g_wenc,
        g_b,
    ):  # pragma: no cover - compiled
        """Latents c_lo..c_hi, each over the rows it is active in (its run of entries), with
        g = g_scale e:  dW_dec[c] = sum v g;  dpre = g . W_dec[c];  db[c] = sum dpre;
        dW_enc[:, c] = sum dpre x - db[c] b_dec[m] (the encoder bias is b_enc - b_dec @ W_enc).
        A latent's sums stay in L1 and are written once; W_enc's gradient in its own [d, M*S]
        layout (consecutive latents fill consecutive columns, so its lines stay in cache)."""
        d = x.shape[1]
        gw = np.empty(d, dtype=np.float32)
        ge = np.empty(d, dtype=np.float32)
        for c in range(c_lo, c_hi):
            p, p1 = run_start[c], run_start[c + 1]
            m = c // d_sae
            wc = w_dec[c]
            for t in range(d):
                gw[t] = 0.0
                ge[t] = 0.0
            db = np.float32(0.0)
            # four entries per pass over the latent's two gradient rows: a pass is bound by its
            # loads and stores of those rows, not by its multiply-adds. A run's last pass repeats
            # its last entry with weight 0 in the slots past its end
            last = p1 - 1
            while p < p1:
                q2, q3, q4 = min(p + 1, last), min(p + 2, last), min(p + 3, last)
                n1, n2, n3, n4 = ent_row[p], ent_row[q2], ent_row[q3], ent_row[q4]
                w2 = g_scale * np.float32(p + 1 < p1)
                w3 = g_scale * np.float32(p + 2 < p1)
                w4 = g_scale * np.float32(p + 3 < p1)
                e1, e2, e3, e4 = err[m, n1], err[m, n2], err[m, n3], err[m, n4]
                v1 = g_scale * vals[n1, ent_col[p]]
                v2 = w2 * vals[n2, ent_col[q2]]
                v3 = w3 * vals[n3, ent_col[q3]]
                v4 = w4 * vals[n4, ent_col[q4]]
                for t in range(d):
                    gw[t] += v1 * e1[t] + v2 * e2[t] + v3 * e3[t] + v4 * e4[t]
                d1, d2, d3, d4 = _dot4(e1, e2, e3, e4, wc)
                d1, d2, d3, d4 = g_scale * d1, w2 * d2, w3 * d3, w4 * d4
                x1, x2, x3, x4 = x[n1], x[n2], x[n3], x[n4]
                for t in range(d):
                    ge[t] += d1 * x1[t] + d2 * x2[t] + d3 * x3[t] + d4 * x4[t]
                db += d1 + d2 + d3 + d4
                p += 4
            out = g_wdec[c]
            bm = b_dec[m]
            for t in range(d):
                out[t] = gw[t]
                g_wenc[t, c] = ge[t] - db * bm[t]
            g_b[c] = db

    @njit(nogil=True, cache=True, fastmath=True, boundscheck=False)
    def _aux_rows(
        lo, hi, x, pre, aidx, amask, kaux, aux_scale, w_dec, err, aux_sse, g_wdec, g_wenc_t, g_b
    ):  # pragma: no cover - compiled
        n_models = aux_scale.shape[0]
        d = x.shape[1]
        r = np.empty(d, dtype=np.float32)
        g = np.empty(d, dtype=np.float32)
        for m in range(n_models):
            if aux_scale[m] == 0.0:
                continue
            j0 = m * kaux
            for n in range(lo, hi):
                xn = x[n]
                em = err[m, n]
                for t in range(d):
                    r[t] = 0.0
                for j in range(j0, j0 + kaux):
                    if amask[n, j]:
                        c = aidx[n, j]
                        v = pre[n, c]
                        if v > 0:
                            _add_scaled(r, v, w_dec[c])
                s = np.float32(0.0)
                for t in range(d):
                    diff = r[t] + em[t]  # aux recon - residual, residual = x - recon = -e
                    s += diff * diff
                    g[t] = aux_scale[m] * diff
                aux_sse[m] += s
                for j in range(j0, j0 + kaux):
                    if amask[n, j]:
                        c = aidx[n, j]
                        v = pre[n, c]
                        if v > 0:
                            _backward_entry(c, v, g, xn, w_dec, g_wdec, g_wenc_t, g_b)


class _Buffers:
    """What one step's kernels write, kept on the stack between steps (fresh multi-MB arrays each
    step cost more in page faults than the kernels' own work): per thread, its rows' sums; shared,
    the error rows, the entries sorted by latent and the gradients (written whole each step)."""

    def __init__(self, parts: int, n: int, n_models: int, d_sae: int, d: int, n_entries: int):
        n_latents = n_models * d_sae
        self.sse = np.zeros((parts, n_models), np.float64)
        self.e_sum = np.zeros((parts, n_models, d), np.float32)
        self.n_active = np.zeros((parts, n_latents), np.int64)
        self.err = np.empty((n_models, n, d), np.float32)  # model-major: a model's rows are contiguous
        self.ent_row = np.empty(n_entries, np.int64)
        self.ent_col = np.empty(n_entries, np.int64)
        self.g_wdec = np.empty((n_latents, d), np.float32)
        self.g_wenc = np.empty((d, n_latents), np.float32)  # W_enc's layout, [d, M * S]
        self.g_b = np.empty(n_latents, np.float32)
        self.aux: list[_AuxBuffers] = []  # made the first time AuxK runs

    def zero(self) -> None:
        for a in (self.sse, self.e_sum, self.n_active):
            a.fill(0)


class _AuxBuffers:
    """One thread's AuxK gradient accumulators (its rows scatter into every dead latent's rows)."""

    def __init__(self, n_models: int, n_latents: int, d: int):
        self.aux_sse = np.zeros(n_models, np.float64)
        self.g_wdec = np.zeros((n_latents, d), np.float32)
        self.g_wenc_t = np.zeros((n_latents, d), np.float32)
        self.g_b = np.zeros(n_latents, np.float32)

    def zero(self) -> None:
        for a in vars(self).values():
            a.fill(0)


def _buffers(stack, parts: int, n: int) -> _Buffers:
    """The stack's buffers for `parts` threads and n rows, reused across steps and zeroed."""
    M, S, d = stack.M, stack.d_sae, stack.d_in
    key = (parts, n, M, S, d, tuple(stack.k_list))
    cached = getattr(stack, "_fused_workspace", None)
    if cached is None or cached[0] != key:
        cached = (key, _Buffers(parts, n, M, S, d, n * sum(stack.k_list)))
        stack._fused_workspace = cached
    cached[1].zero()
    return cached[1]


def _balanced_cuts(latent_start: np.ndarray, parts: int) -> np.ndarray:
    """parts + 1 latent boundaries splitting the latents' entries (latent_start: where each
    latent's entries start, and their total last; plus one each: an empty latent still writes its
    rows) about evenly over the threads."""
    n_latents = latent_start.shape[0] - 1
    cost = latent_start + np.arange(n_latents + 1)
    cuts = np.searchsorted(cost, np.linspace(0, cost[-1], parts + 1)).astype(np.int64)
    cuts[0], cuts[-1] = 0, n_latents
    return np.maximum.accumulate(cuts)


@torch.no_grad()
def losses_and_grads(stack, x: Tensor, scale: float, dead: Tensor | None = None):
    """StackLoss of every model on batch x, with every parameter's .grad set (what losses() and
    backward() give on the autograd path). `dead` [M, d_sae] overrides the dead-latent counters.

    W_dec's and W_enc's gradients are views of buffers the next call reuses: take them (train_step
    does) first."""
    from core.sae.stack import StackLoss

    x = x.contiguous()
    n, d = x.shape
    M, S = stack.M, stack.d_sae
    W = stack.W_enc.reshape(d, M * S)
    bias = (stack.b_enc - torch.einsum("md,dms->ms", stack.b_dec, stack.W_enc)).reshape(-1)
    pre = torch.addmm(bias, x, W)
    idx, vals = segmented_topk(pre, S, stack.k_list, values=True)
    parts = max(1, min(threads(), n // MIN_ROWS_PER_THREAD))
    buf = _buffers(stack, parts, n)
    err = buf.err
    x_np, pre_np, idx_np, vals_np = x.numpy(), pre.numpy(), idx.numpy(), vals.numpy()
    w_dec = stack.W_dec.detach().reshape(M * S, d).contiguous().numpy()
    b_dec = stack.b_dec.detach().contiguous().numpy()
    bag_start = np.concatenate([[0], np.cumsum(stack.k_list)]).astype(np.int64)
    g_scale = np.float32(2.0 / (n * scale))

    # 1. rows over threads: errors, MSE, and each thread's count of every latent's active rows
    def forward(lo, hi, t):
        _forward_rows(lo, hi, x_np, vals_np, idx_np, bag_start, w_dec, b_dec, err, buf.sse[t], buf.e_sum[t],
                      buf.n_active[t])  # fmt: skip

    run_chunks(forward, n, parts)
    # 2. a counting sort of the active entries by latent; each thread fills its rows' places:
    # pos[t, c] = where thread t's first entry of latent c goes
    per_latent = buf.n_active.sum(0)
    run_start = np.concatenate([[0], np.cumsum(per_latent)]).astype(np.int64)
    pos = run_start[:-1] + np.cumsum(buf.n_active, 0) - buf.n_active
    run_chunks(
        lambda lo, hi, t: _fill_entries(lo, hi, vals_np, idx_np, pos[t], buf.ent_row, buf.ent_col), n, parts
    )
    # 3. latents over threads: every gradient of a latent from its rows, written once
    cuts = _balanced_cuts(run_start, parts)
    run_chunks(
        lambda lo, hi, t: _backward_latents(int(cuts[t]), int(cuts[t + 1]), S, x_np, vals_np, err, run_start,
                                            buf.ent_row, buf.ent_col, w_dec, b_dec, g_scale, buf.g_wdec,
                                            buf.g_wenc, buf.g_b),
        parts, parts,
    )  # fmt: skip
    g_wdec, g_wenc, g_b_np = buf.g_wdec, buf.g_wenc, buf.g_b
    mse = torch.from_numpy(buf.sse.sum(0)).float() / (n * scale)

    if dead is None:
        dead = stack.since_fired > stack.dead_after[:, None]
    aux = mse.new_zeros(M)
    if bool((stack.auxk_coef > 0).any()) and bool(dead.any()):
        kaux = min(stack.kaux, int(dead.sum(-1).max()))
        pre3 = pre.view(n, M, S)
        aidx = pre3.masked_fill(~dead[None], float("-inf")).topk(kaux, dim=-1)[1]
        aflat = (aidx + stack.offsets).reshape(n, -1).contiguous()
        amask = dead.reshape(-1)[aflat].contiguous()
        residual = -torch.from_numpy(err).transpose(0, 1)  # [n, M, d]
        denom = (residual - residual.mean(0)).pow(2).sum(-1).mean(0)
        power = residual.pow(2).sum(-1).mean(0)
        active = dead.any(-1) & (denom > 1e-6 * power)  # where auxk_ratio is not 0 (core.sae.base)
        coef = torch.where(active, stack.auxk_coef * 2.0 / (n * torch.where(active, denom, 1.0)), 0.0)
        if bool(active.any()):
            aux_scale = coef.float().numpy()
            aidx_np, amask_np = aflat.numpy(), amask.numpy()
            while len(buf.aux) < parts:
                buf.aux.append(_AuxBuffers(M, M * S, d))
            abufs = buf.aux[:parts]
            for b in abufs:
                b.zero()

            def auxk(lo, hi, t):
                b = abufs[t]
                _aux_rows(lo, hi, x_np, pre_np, aidx_np, amask_np, kaux, aux_scale, w_dec, err,
                          b.aux_sse, b.g_wdec, b.g_wenc_t, b.g_b)  # fmt: skip

            run_chunks(auxk, n, parts)
            aux_b = np.zeros_like(g_b_np)
            for b in abufs:
                g_wdec += b.g_wdec
                g_wenc += b.g_wenc_t.T
                aux_b += b.g_b
            g_b_np += aux_b
            g_wenc -= np.einsum("md,ms->dms", b_dec, aux_b.reshape(M, S)).reshape(d, M * S)  # bias term
            error = torch.from_numpy(sum(b.aux_sse for b in abufs)).float() / n
            aux = auxk_ratio(error, denom, power) * dead.any(-1)

    g_b = torch.from_numpy(g_b_np).view(M, S)
    g_wenc = torch.from_numpy(g_wenc).view(d, M, S)
    stack.W_enc.grad = g_wenc
    stack.b_enc.grad = g_b.clone()
    g_bdec = torch.from_numpy(buf.e_sum.sum(0)) * float(g_scale)
    stack.b_dec.grad = g_bdec - torch.einsum("ms,dms->md", g_b, stack.W_enc)
    stack.W_dec.grad = torch.from_numpy(g_wdec).view(M, S, d)
    fired = torch.from_numpy(per_latent > 0).view(M, S)  # a fresh array: the caller may keep it
    loss = (mse + stack.auxk_coef * aux).sum()
    zero = mse.new_zeros(M)
    return StackLoss(loss, mse, aux, zero, fired)
