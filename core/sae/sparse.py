"""The sparse kernels of the training fast path (core.sae.stack), after sparsify's recipe.

* `topk_indices`: an exact two-level top-k, several times faster than torch.topk on CPU at K >= 10
  (the compiled one-pass version for a whole stack is `core.sae.cpu_topk`);
* `GatherPre`: the selected pre-activations of a TopK encoder whose matmul ran without autograd;
  its backward only touches the selected latents: dW_enc[:, j] = sum g * x over the rows that
  selected j, a transposed embedding_bag - no dense [N, d_sae] gradient and no second big matmul;
* `BagDecode`: decoding as one F.embedding_bag over the active rows of W_dec per (sample, model),
  weighted by the values; its backward again only touches the active decoder rows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def scatter_rows(target: Tensor, src_row: Tensor, weight: Tensor, src: Tensor, n_out: int) -> Tensor:
    """out[j] = sum over entries e with target[e] == j of weight[e] * src[src_row[e]]  -> [n_out, d].

    A transposed embedding_bag: entries sorted by target form one bag per output row."""
    order = target.argsort()
    counts = torch.bincount(target, minlength=n_out)
    offsets = counts.cumsum(0) - counts
    return F.embedding_bag(src_row[order], src, offsets, per_sample_weights=weight[order], mode="sum")


def topk_indices(x: Tensor, k: int) -> Tensor:
    """Indices [n, k] of the k largest entries of each row of x [n, L] (any order), exact.

    torch.topk on CPU slows down sharply past k ~ 10; a two-level selection is several times faster
    there: the k blocks (of b entries) with the largest maxima hold every top-k entry (a block
    outside them has k blocks, hence k entries, above its max), so top-k over the blocks' maxima,
    then top-k among those k*b candidates, gives the same values as topk."""
    n, L = x.shape
    b = 4 if L < 1000 else 8
    nb = -(-L // b)
    if x.device.type != "cpu" or k < 10 or nb < 2 * k:
        return x.topk(k, dim=-1, sorted=False)[1]
    if nb * b != L:
        x = F.pad(x, (0, nb * b - L), value=float("-inf"))
    block = x.reshape(n, nb, b).amax(-1).topk(k, dim=-1, sorted=False)[1]
    cand = (block.unsqueeze(-1) * b + torch.arange(b, device=x.device)).reshape(n, k * b)
    return cand.gather(1, x.gather(1, cand).topk(k, dim=-1, sorted=False)[1])


class BagDecode(torch.autograd.Function):
    """out[n*M + m] = sum over model m's entries s of row n of vals[n, s] * W[idx[n, s]] (embedding_bag).

    Backward: dW via a transposed embedding_bag over the active rows only; dvals by a row gather."""

    @staticmethod
    def forward(ctx, idx, vals, W, offsets, bag_of_col):
        out = F.embedding_bag(idx.reshape(-1), W, offsets, per_sample_weights=vals.reshape(-1), mode="sum")
        n, M = idx.shape[0], out.shape[0] // idx.shape[0]
        offset2bag = (torch.arange(n, device=idx.device)[:, None] * M + bag_of_col[None, :]).reshape(-1)
        ctx.save_for_backward(idx, vals, W, offsets, offset2bag, bag_of_col)
        return out

    @staticmethod
    def backward(ctx, g):
        idx, vals, W, offsets, offset2bag, bag_of_col = ctx.saved_tensors
        n, S = idx.shape
        flat = idx.reshape(-1)
        g = g.contiguous()
        grad_vals = grad_w = None
        if ctx.needs_input_grad[1]:
            grad_vals = torch.ops.aten._embedding_bag_per_sample_weights_backward(
                g, W, flat, offsets, offset2bag, 0, -1
            ).view(n, S)
        if ctx.needs_input_grad[2]:
            grad_w = scatter_rows(flat, offset2bag, vals.reshape(-1).to(g.dtype), g, W.shape[0])
        return None, grad_vals, grad_w, None, None


class GatherPre(torch.autograd.Function):
    """vals[n, s] = pre[n, idx[n, s]] for pre = x @ W + bias computed without autograd.

    The backward touches only the selected entries (sparsify's sparse encoder backward):
    dW[:, j] = sum g * x[n] over the entries that selected latent j, db[j] = sum g."""

    @staticmethod
    def forward(ctx, x, W, bias, idx, pre):  # noqa: D401
        ctx.save_for_backward(x, idx)
        ctx.n_lat = W.shape[1]
        return pre.gather(1, idx)

    @staticmethod
    def backward(ctx, g):
        x, idx = ctx.saved_tensors
        n, S = idx.shape
        flat, gf = idx.reshape(-1), g.reshape(-1).to(x.dtype)
        rows = torch.arange(n, device=idx.device).repeat_interleave(S)
        grad_w = scatter_rows(flat, rows, gf, x, ctx.n_lat).t()
        grad_b = torch.zeros(ctx.n_lat, dtype=gf.dtype, device=gf.device).index_add_(0, flat, gf)
        return None, grad_w, grad_b, None, None
