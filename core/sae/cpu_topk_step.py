"""The TopK stack's training step on a CPU batch in compiled kernels (numba): decode, loss and every
gradient of the M models in one pass over the batch's rows, with the rows split over threads.

Why: the autograd path (`SAEStack.losses` + backward) builds a dozen [N, M, d_in] / [N, sum K]
intermediates and sorts every active entry twice for its scatter-adds; on 2 cores the grid's step
cost about 10x its encoder matmul. Here, per row n and model m (W_dec's K active rows stay hot in
cache between the forward and the backward):

    recon = b_dec[m] + sum_j v_j W_dec[c_j]        (v_j = relu(pre[n, c_j]), c_j the TopK picks)
    e = recon - x[n];  sse[m] += |e|^2;  g = 2 e / (N scale)
    dW_dec[c_j] += v_j g;  dpre_j = g . W_dec[c_j];  dW_enc^T[c_j] += dpre_j x[n];  db[c_j] += dpre_j

then, where a model has dead latents and the batch's residual has variance, the AuxK pass does the
same for the dead latents' reconstruction of the residual -e (weight coef * 2 / (N var)). The
encoder's bias is b_enc - b_dec @ W_enc, so its gradient db reaches b_enc, b_dec and W_enc (done in
torch, [M, d_sae]-sized). Each thread accumulates its own rows' gradients; they are summed once.

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
    def _main_rows(
        lo,
        hi,
        x,
        vals,
        idx,
        bag_start,
        w_dec,
        b_dec,
        g_scale,
        keep_err,
        err,
        sse,
        g_bdec,
        g_wdec,
        g_wenc_t,
        g_b,
        fired,
    ):  # pragma: no cover - compiled
        n_models, d = b_dec.shape
        r = np.empty(d, dtype=np.float32)
        g = np.empty(d, dtype=np.float32)
        for m in range(n_models):  # model-major: one model's W_dec rows stay in cache over the rows
            j0, j1 = bag_start[m], bag_start[m + 1]
            for n in range(lo, hi):
                xn = x[n]
                for t in range(d):
                    r[t] = b_dec[m, t]
                for j in range(j0, j1):
                    c = idx[n, j]
                    v = vals[n, j]
                    if v > 0:
                        _add_scaled(r, v, w_dec[c])
                s = np.float32(0.0)
                for t in range(d):
                    e = r[t] - xn[t]
                    if keep_err:  # only the AuxK pass reads it: skipped, it is 1 KB a row less traffic
                        err[n, m, t] = e
                    s += e * e
                    g[t] = g_scale * e
                    g_bdec[m, t] += g[t]
                sse[m] += s
                for j in range(j0, j1):
                    c = idx[n, j]
                    v = vals[n, j]
                    if v > 0:
                        fired[c] = True
                        _backward_entry(c, v, g, xn, w_dec, g_wdec, g_wenc_t, g_b)

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
                    diff = r[t] + err[n, m, t]  # aux recon - residual, residual = x - recon = -e
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
    """One thread's gradient accumulators. Kept on the stack between steps and zeroed in place:
    fresh multi-MB arrays each step cost more in page faults than the kernel's own work."""

    def __init__(self, n_models: int, n_latents: int, d: int):
        self.sse = np.zeros(n_models, np.float64)
        self.aux_sse = np.zeros(n_models, np.float64)
        self.g_bdec = np.zeros((n_models, d), np.float32)
        self.g_wdec = np.zeros((n_latents, d), np.float32)
        self.g_wenc_t = np.zeros((n_latents, d), np.float32)
        self.g_b = np.zeros(n_latents, np.float32)
        self.fired = np.zeros(n_latents, np.bool_)

    def zero(self) -> None:
        for a in vars(self).values():
            a.fill(0)


def _workspace(stack, parts: int, n: int) -> tuple[list[_Buffers], np.ndarray]:
    """The stack's zeroed per-thread buffers and its [n, M, d_in] error buffer, reused across steps."""
    M, S, d = stack.M, stack.d_sae, stack.d_in
    key = (parts, n, M, S, d)
    cached = getattr(stack, "_fused_workspace", None)
    if cached is None or cached[0] != key:
        cached = (key, [_Buffers(M, M * S, d) for _ in range(parts)], np.empty((n, M, d), np.float32))
        stack._fused_workspace = cached
    else:
        for b in cached[1]:
            b.zero()
    return cached[1], cached[2]


def _summed(bufs: list[_Buffers], name: str) -> np.ndarray:
    out = getattr(bufs[0], name)
    for b in bufs[1:]:
        out += getattr(b, name)
    return out


@torch.no_grad()
def losses_and_grads(stack, x: Tensor, scale: float, dead: Tensor | None = None):
    """StackLoss of every model on batch x, with every parameter's .grad set (what losses() and
    backward() give on the autograd path). `dead` [M, d_sae] overrides the dead-latent counters.

    W_dec's gradient is a view of a buffer the next call reuses: take it (train_step does) first."""
    from core.sae.stack import StackLoss

    x = x.contiguous()
    n, d = x.shape
    M, S = stack.M, stack.d_sae
    W = stack.W_enc.reshape(d, M * S)
    bias = (stack.b_enc - torch.einsum("md,dms->ms", stack.b_dec, stack.W_enc)).reshape(-1)
    pre = torch.addmm(bias, x, W)
    idx, vals = segmented_topk(pre, S, stack.k_list, values=True)
    parts = max(1, min(threads(), n // MIN_ROWS_PER_THREAD))
    bufs, err = _workspace(stack, parts, n)
    x_np, pre_np, idx_np, vals_np = x.numpy(), pre.numpy(), idx.numpy(), vals.numpy()
    w_dec = stack.W_dec.detach().reshape(M * S, d).contiguous().numpy()
    b_dec = stack.b_dec.detach().contiguous().numpy()
    bag_start = np.concatenate([[0], np.cumsum(stack.k_list)]).astype(np.int64)
    g_scale = np.float32(2.0 / (n * scale))

    def main(lo, hi, t):
        b = bufs[t]
        _main_rows(lo, hi, x_np, vals_np, idx_np, bag_start, w_dec, b_dec, g_scale, uses_auxk, err,
                   b.sse, b.g_bdec, b.g_wdec, b.g_wenc_t, b.g_b, b.fired)  # fmt: skip

    if dead is None:
        dead = stack.since_fired > stack.dead_after[:, None]
    uses_auxk = bool((stack.auxk_coef > 0).any()) and bool(dead.any())
    run_chunks(main, n, parts)
    mse = torch.from_numpy(_summed(bufs, "sse")).float() / (n * scale)

    aux = mse.new_zeros(M)
    if uses_auxk:
        kaux = min(stack.kaux, int(dead.sum(-1).max()))
        pre3 = pre.view(n, M, S)
        aidx = pre3.masked_fill(~dead[None], float("-inf")).topk(kaux, dim=-1)[1]
        aflat = (aidx + stack.offsets).reshape(n, -1).contiguous()
        amask = dead.reshape(-1)[aflat].contiguous()
        residual = -torch.from_numpy(err)
        denom = (residual - residual.mean(0)).pow(2).sum(-1).mean(0)
        power = residual.pow(2).sum(-1).mean(0)
        active = dead.any(-1) & (denom > 1e-6 * power)  # where auxk_ratio is not 0 (core.sae.base)
        coef = torch.where(active, stack.auxk_coef * 2.0 / (n * torch.where(active, denom, 1.0)), 0.0)
        if bool(active.any()):
            aux_scale = coef.float().numpy()
            aidx_np, amask_np = aflat.numpy(), amask.numpy()

            def auxk(lo, hi, t):
                b = bufs[t]
                _aux_rows(lo, hi, x_np, pre_np, aidx_np, amask_np, kaux, aux_scale, w_dec, err,
                          b.aux_sse, b.g_wdec, b.g_wenc_t, b.g_b)  # fmt: skip

            run_chunks(auxk, n, parts)
            error = torch.from_numpy(_summed(bufs, "aux_sse")).float() / n
            aux = auxk_ratio(error, denom, power) * dead.any(-1)

    g_b = torch.from_numpy(_summed(bufs, "g_b")).view(M, S)
    # a contiguous copy: the transposed view's strides differ from W_enc's, which Adam's fused
    # kernel does not allow for (it walks grad and parameter as flat arrays)
    g_wenc = torch.from_numpy(_summed(bufs, "g_wenc_t")).t().contiguous().view(d, M, S)
    g_wenc -= torch.einsum("md,ms->dms", stack.b_dec, g_b)
    stack.W_enc.grad = g_wenc
    stack.b_enc.grad = g_b.clone()
    stack.b_dec.grad = torch.from_numpy(_summed(bufs, "g_bdec")) - torch.einsum(
        "ms,dms->md", g_b, stack.W_enc
    )
    stack.W_dec.grad = torch.from_numpy(_summed(bufs, "g_wdec")).view(M, S, d)
    fired = torch.from_numpy(_summed_any(bufs).copy()).view(M, S)  # the caller may keep it
    loss = (mse + stack.auxk_coef * aux).sum()
    zero = mse.new_zeros(M)
    return StackLoss(loss, mse, aux, zero, fired)


def _summed_any(bufs: list[_Buffers]) -> np.ndarray:
    out = bufs[0].fired
    for b in bufs[1:]:
        out |= b.fired
    return out
