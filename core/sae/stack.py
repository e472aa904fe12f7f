"""The training fast path: M models of one architecture and shape trained as one module.

Same-shaped models (one latent dim, several K) share the input batch, so their encoders run as ONE
matmul x @ W_enc[d_in, M*d_sae]; b_dec is folded in as b_enc - b_dec @ W_enc. For TopK models
(sparsify's recipe):
* the selection runs without autograd (each model its own K; on CPU one compiled pass over every
  model, `core.sae.cpu_topk`; elsewhere `topk_indices`, an exact two-level top-k), and the K values
  are gathered by _GatherPre, whose backward only touches the selected latents: dW_enc[:, j] =
  sum g * x over the rows that selected j, a transposed embedding_bag - no dense [N, d_sae] gradient and no second big matmul;
* decoding is one F.embedding_bag over the K active rows of W_dec per (sample, model), weighted by
  the values (no dense [N, d_sae] @ [d_sae, d_in] matmul); its backward (_BagDecode) again only
  touches the active decoder rows.

The optimiser (Adam) lives here as buffers, so every tensor of the stack - parameters, Adam moments,
dead-latent counters, BatchTopK thresholds - has a model axis; `select` keeps a subset of models
(early-stopped ones leave the stack) and `state_tensors` is the resumable state.

`SAE.reference_loss` (core.sae.base) is the naive dense reference this is tested against.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.sae import ARCHITECTURES, SAE, SAEConfig, cpu_topk, create_sae

_HAS_FUSED_ADAM = hasattr(torch, "_fused_adam_")

# tensor name -> axis that indexes the model
_PARAMS = {"W_enc": 1, "b_enc": 0, "W_dec": 0, "b_dec": 0}


def _scatter_rows(target: Tensor, src_row: Tensor, weight: Tensor, src: Tensor, n_out: int) -> Tensor:
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


class _BagDecode(torch.autograd.Function):
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
            grad_w = _scatter_rows(flat, offset2bag, vals.reshape(-1).to(g.dtype), g, W.shape[0])
        return None, grad_vals, grad_w, None, None


class _GatherPre(torch.autograd.Function):
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
        grad_w = _scatter_rows(flat, rows, gf, x, ctx.n_lat).t()
        grad_b = torch.zeros(ctx.n_lat, dtype=gf.dtype, device=gf.device).index_add_(0, flat, gf)
        return None, grad_w, grad_b, None, None


class StackLoss(NamedTuple):
    loss: Tensor
    """Scalar: sum over models of (mse + auxk_coefficient * aux + l1); models train independently."""
    mse: Tensor
    """[M] normalised MSE per model."""
    aux: Tensor
    """[M] AuxK loss per model."""
    l1: Tensor
    """[M] weighted L1 per model (relu)."""
    fired: Tensor
    """[M, d_sae] bool: latent active on at least one sample of the batch."""


class StackEval(NamedTuple):
    recon: Tensor
    """[N, M, d_in] inference reconstruction."""
    active: Tensor
    """[N, M, d_sae] bool: latent active (inference rule)."""


class SAEStack(nn.Module):
    def __init__(self, cfgs: list[SAEConfig]):
        super().__init__()
        if not cfgs:
            raise ValueError("empty stack")
        first = cfgs[0]
        for c in cfgs:
            if (c.architecture, c.d_in, c.d_sae) != (first.architecture, first.d_in, first.d_sae):
                raise ValueError("a stack holds models of one architecture and shape")
        self.cfgs = list(cfgs)
        self.arch = first.architecture
        self.M, self.d_in, self.d_sae = len(cfgs), first.d_in, first.d_sae
        self.unit_norm = ARCHITECTURES[self.arch].unit_norm_decoder
        M, d_in, d_sae = self.M, self.d_in, self.d_sae
        self.W_enc = nn.Parameter(torch.zeros(d_in, M, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(M, d_sae))
        self.W_dec = nn.Parameter(torch.zeros(M, d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(M, d_in))
        for name in _PARAMS:
            p = getattr(self, name)
            self.register_buffer(f"adam_m_{name}", torch.zeros_like(p))
            self.register_buffer(f"adam_v_{name}", torch.zeros_like(p))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.float64))
        self.register_buffer("since_fired", torch.zeros(M, d_sae, dtype=torch.float64))
        self.register_buffer("threshold", torch.zeros(M))
        self.register_buffer("ks", torch.tensor([c.k or 0 for c in cfgs], dtype=torch.long))
        self.k_list = [int(c.k or 0) for c in cfgs]
        # model of each column of a _topk_select row (K_0 zeros, K_1 ones, ...)
        self.register_buffer(
            "bag_of_col", torch.repeat_interleave(torch.arange(M), self.ks), persistent=False
        )
        self.register_buffer(
            "dead_after", torch.tensor([c.dead_after_samples for c in cfgs], dtype=torch.float64)
        )
        self.register_buffer("auxk_coef", torch.tensor([c.auxk_coefficient for c in cfgs]))
        self.register_buffer("l1_coef", torch.tensor([c.l1_coefficient for c in cfgs]))
        self.register_buffer("offsets", (torch.arange(M) * d_sae).view(1, M, 1))
        self.kaux = min(max(c.auxk_latents for c in cfgs), d_sae)

    # -- conversion to and from single SAEs -------------------------------------------------
    @classmethod
    @torch.no_grad()
    def from_saes(cls, saes: list[SAE]) -> SAEStack:
        stack = cls([s.cfg for s in saes])
        stack.to(saes[0].W_enc.device)
        for m, s in enumerate(saes):
            stack.W_enc[:, m] = s.W_enc
            stack.b_enc[m] = s.b_enc
            stack.W_dec[m] = s.W_dec
            stack.b_dec[m] = s.b_dec
            if hasattr(s, "threshold"):
                stack.threshold[m] = s.threshold
        return stack

    @torch.no_grad()
    def to_saes(self) -> list[SAE]:
        out = []
        for m, cfg in enumerate(self.cfgs):
            s = create_sae(cfg).to(self.W_enc.device)
            s.W_enc.copy_(self.W_enc[:, m])
            s.b_enc.copy_(self.b_enc[m])
            s.W_dec.copy_(self.W_dec[m])
            s.b_dec.copy_(self.b_dec[m])
            if hasattr(s, "threshold"):
                s.threshold.copy_(self.threshold[m])
            out.append(s.cpu())
        return out

    def state_tensors(self) -> dict[str, Tensor]:
        return {k: v.detach() for k, v in self.state_dict().items()}

    @torch.no_grad()
    def load_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        own = self.state_dict()
        if set(tensors) != set(own):
            raise ValueError(
                f"training state holds {sorted(set(tensors) ^ set(own))} that this stack does not"
            )
        for k, v in tensors.items():
            if k not in own or own[k].shape != v.shape:
                raise ValueError(f"training state tensor {k} does not fit this stack")
            own[k].copy_(v)

    @torch.no_grad()
    def select(self, keep: list[int]) -> SAEStack:
        """A stack of the models at positions `keep`, carrying parameters and optimiser state."""
        new = SAEStack([self.cfgs[i] for i in keep]).to(self.W_enc.device)
        idx = torch.tensor(keep, device=self.W_enc.device)
        for k, v in self.state_dict().items():
            if k in ("adam_step",):
                new.state_dict()[k].copy_(v)
            elif k in ("ks", "dead_after", "auxk_coef", "l1_coef", "offsets"):
                continue
            else:
                axis = _PARAMS.get(k.split("_", 2)[-1] if k.startswith("adam_") else k, 0)
                new.state_dict()[k].copy_(v.index_select(axis, idx))
        return new

    # -- forward ----------------------------------------------------------------------------
    def pre_acts(self, x: Tensor) -> Tensor:
        """[N, M, d_sae] = (x - b_dec[m]) @ W_enc[m] + b_enc[m], as one matmul."""
        n = x.shape[0]
        bias = self.b_enc - torch.einsum("md,dms->ms", self.b_dec, self.W_enc)
        h = torch.addmm(bias.reshape(-1), x, self.W_enc.reshape(self.d_in, self.M * self.d_sae))
        return h.view(n, self.M, self.d_sae)

    def _bag_decode(self, idx: Tensor, vals: Tensor) -> Tensor:
        """sum_j vals[n,m,j] * W_dec[m, idx[n,m,j]] via embedding_bag -> [N, M, d_in] (no b_dec)."""
        n, M, kk = idx.shape
        out = F.embedding_bag(
            (idx + self.offsets).reshape(n * M, kk),
            self.W_dec.reshape(M * self.d_sae, self.d_in),
            per_sample_weights=vals.reshape(n * M, kk),
            mode="sum",
        )
        return out.view(n, M, self.d_in)

    def _topk_select(self, pre: Tensor) -> Tensor:
        """TopK of every model as flat indices into the M*d_sae stacked latents, [N, sum K].

        Row n holds model 0's K_0 entries, then model 1's K_1, ... (ragged bags for embedding_bag);
        each model runs its own topk, so a small K costs less than the stack's largest."""
        with torch.no_grad():
            if pre.device.type == "cpu" and pre.dtype == torch.float32 and cpu_topk.available():
                return cpu_topk.segmented_topk(pre.reshape(pre.shape[0], -1), self.d_sae, self.k_list)
            return torch.cat(
                [topk_indices(pre[:, m], k) + m * self.d_sae for m, k in enumerate(self.k_list)], dim=1
            )

    def _codes_decode(self, idx: Tensor, vals: Tensor) -> Tensor:
        """Decode (flat indices, values) of _topk_select -> [N, M, d_in] (no b_dec), one embedding_bag call."""
        n = idx.shape[0]
        starts = torch.cumsum(self.ks, 0) - self.ks  # bag starts within one row
        offsets = (torch.arange(n, device=idx.device)[:, None] * idx.shape[1] + starts).reshape(-1)
        out = _BagDecode.apply(
            idx, vals, self.W_dec.reshape(self.M * self.d_sae, self.d_in), offsets, self.bag_of_col
        )
        return out.view(n, self.M, self.d_in)

    def _dense_codes(self, pre: Tensor, training: bool) -> Tensor:
        if self.arch == "relu":
            return pre.relu()
        if not training:  # batchtopk inference: threshold
            return pre.relu() * (pre > self.threshold[None, :, None]).to(pre.dtype)
        n = pre.shape[0]
        acts = pre.relu()
        outs = []
        for m in range(self.M):
            flat = acts[:, m, :].reshape(-1)
            kk = min(int(self.ks[m]) * n, flat.numel())
            vals, idx = flat.topk(kk, sorted=False)
            outs.append(torch.zeros_like(flat).scatter(0, idx, vals).view(n, self.d_sae))
            with torch.no_grad():
                pos = vals[vals > 0]
                if pos.numel():
                    # EMA of the smallest selected activation, started at the first batch's value
                    lr = 1.0 if float(self.adam_step) == 0 else self.cfgs[m].threshold_momentum
                    self.threshold[m] = (1 - lr) * self.threshold[m] + lr * pos.min()
        return torch.stack(outs, dim=1)

    def losses(self, x: Tensor, scale: float, dead: Tensor | None = None) -> StackLoss:
        """Training losses of every model on batch x [N, d_in]. `dead` [M, d_sae] overrides the counters."""
        n, ML = x.shape[0], self.M * self.d_sae
        if self.arch == "topk":
            W = self.W_enc.reshape(self.d_in, ML)
            bias = (self.b_enc - torch.einsum("md,dms->ms", self.b_dec, self.W_enc)).reshape(-1)
            with torch.no_grad():
                pre = torch.addmm(bias, x, W)  # [N, M*d_sae]; gradients flow through _GatherPre only
            idx = self._topk_select(pre.view(n, self.M, self.d_sae))
            vals = _GatherPre.apply(x, W, bias, idx, pre).relu()
            recon = self._codes_decode(idx, vals) + self.b_dec
            with torch.no_grad():
                hits = torch.zeros(ML, device=x.device).index_add_(
                    0, idx.reshape(-1), (vals > 0).reshape(-1).float()
                )
                fired = (hits > 0).view(self.M, self.d_sae)
        else:
            pre = self.pre_acts(x)
            z = self._dense_codes(pre, training=True)
            recon = torch.einsum("nms,msd->nmd", z, self.W_dec) + self.b_dec
            fired = (z > 0).any(0)
        mse = (recon - x[:, None, :]).pow(2).sum(-1).mean(0) / scale
        zero = mse.new_zeros(self.M)
        l1, aux = zero, zero
        if self.arch == "relu":
            norms = self.W_dec.norm(dim=-1)  # [M, d_sae]
            l1 = self.l1_coef * (z * norms).sum(-1).mean(0) / math.sqrt(scale)
        else:
            if dead is None:
                dead = self.since_fired > self.dead_after[:, None]
            if bool((self.auxk_coef > 0).any()) and bool(dead.any()):
                # top-k_aux among each model's dead latents; past a model's dead count the picks are
                # live latents, masked to 0 (the reference's -inf -> ReLU 0)
                kaux = min(self.kaux, int(dead.sum(-1).max()))
                pre3 = pre.view(n, self.M, self.d_sae)
                with torch.no_grad():
                    aidx = pre3.masked_fill(~dead[None], float("-inf")).topk(kaux, dim=-1)[1]
                    aflat = (aidx + self.offsets).reshape(n, -1)
                    amask = dead.reshape(-1)[aflat]
                if self.arch == "topk":
                    avals = _GatherPre.apply(x, W, bias, aflat, pre).relu() * amask
                else:
                    avals = pre.reshape(n, -1).gather(1, aflat).relu() * amask
                aux_recon = self._bag_decode(aidx, avals.view(n, self.M, kaux))
                residual = (x[:, None, :] - recon).detach()
                denom = (residual - residual.mean(0)).pow(2).sum(-1).mean(0)
                aux = torch.nan_to_num((aux_recon - residual).pow(2).sum(-1).mean(0) / denom)
                aux = aux * dead.any(-1)
        loss = (mse + self.auxk_coef * aux + l1).sum()
        return StackLoss(loss, mse.detach(), aux.detach(), l1.detach(), fired)

    @torch.no_grad()
    def evaluate(self, x: Tensor) -> StackEval:
        """Inference reconstruction and active mask of every model on x."""
        pre = self.pre_acts(x)
        if self.arch == "topk":
            idx = self._topk_select(pre)
            vals = pre.reshape(pre.shape[0], -1).gather(1, idx).relu()
            recon = self._codes_decode(idx, vals) + self.b_dec
            active = torch.zeros(pre.shape[0], self.M * self.d_sae, dtype=torch.bool, device=x.device)
            active.scatter_(-1, idx, vals > 0)
            active = active.view_as(pre)
        else:
            z = self._dense_codes(pre, training=False)
            recon = torch.einsum("nms,msd->nmd", z, self.W_dec) + self.b_dec
            active = z > 0
        return StackEval(recon, active)

    # -- optimisation -----------------------------------------------------------------------
    def train_step(self, x: Tensor, scale: float, lr: float, betas=(0.9, 0.999), eps=6.25e-10) -> StackLoss:
        """One Adam step of every model on batch x (OpenAI recipe for the decoder)."""
        for p in self.parameters():
            p.grad = None
        out = self.losses(x, scale)
        out.loss.backward()
        with torch.no_grad():
            if self.unit_norm:
                g, w = self.W_dec.grad, self.W_dec
                g.sub_((g * w).sum(-1, keepdim=True) * w)
            self.adam_step += 1
            b1, b2 = betas
            params = [getattr(self, n) for n in _PARAMS]
            grads = [p.grad for p in params]
            ms = [getattr(self, f"adam_m_{n}") for n in _PARAMS]
            vs = [getattr(self, f"adam_v_{n}") for n in _PARAMS]
            if _HAS_FUSED_ADAM:  # one pass per tensor (what torch.optim.Adam(fused=True) calls)
                step_t = self.adam_step.to(torch.float32)
                torch._fused_adam_(
                    params, grads, ms, vs, [], [step_t] * len(params),
                    lr=lr, beta1=b1, beta2=b2, weight_decay=0.0, eps=eps, amsgrad=False, maximize=False,
                )  # fmt: skip
            else:
                t = float(self.adam_step)
                bc1, bc2 = 1 - b1**t, 1 - b2**t
                for p, g, m, v in zip(params, grads, ms, vs, strict=True):
                    m.mul_(b1).add_(g, alpha=1 - b1)
                    v.mul_(b2).addcmul_(g, g, value=1 - b2)
                    p.addcdiv_(m, (v / bc2).sqrt_().add_(eps), value=-lr / bc1)
            for p in params:
                p.grad = None
            if self.unit_norm:
                self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))
            self.since_fired += x.shape[0]
            self.since_fired.masked_fill_(out.fired, 0)
        return out
