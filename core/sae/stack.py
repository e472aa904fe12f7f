"""The training fast path: M models of one architecture and shape trained as one module.

Same-shaped models (one latent dim, several K) share the input batch, so their encoders run as ONE
matmul x @ W_enc[d_in, M*d_sae]; b_dec is folded in as b_enc - b_dec @ W_enc. The architecture
(core.sae.ARCHITECTURES) says how pre-activations become latents (`SAE.stack_codes`), what it adds
to the loss (`SAE.stack_penalty`) and which per-model tensors it needs (`SAE.stack_tensors`); the
stack does the rest the same way for all: decoding (dense, or for sparse codes one F.embedding_bag
over the K active rows of W_dec per (sample, model), `core.sae.sparse.BagDecode`), the MSE, the
AuxK loss on dead latents, Adam, the decoder-norm constraint and the dead-latent counters.

The optimiser (Adam) lives here as buffers, so every tensor of the stack - parameters, Adam moments,
dead-latent counters, architecture tensors such as BatchTopK thresholds - has a model axis; `select`
keeps a subset of models (early-stopped ones leave the stack) and `state_tensors` is the resumable
state (tensors derived from the configs are rebuilt, not saved).

`SAE.reference_loss` (core.sae.base) is the naive dense reference this is tested against.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.sae import ARCHITECTURES, SAE, SAEConfig, cpu_topk, cpu_topk_step, create_sae
from core.sae.base import StackCodes, auxk_ratio
from core.sae.sparse import BagDecode, topk_indices

_HAS_FUSED_ADAM = hasattr(torch, "_fused_adam_")

_SHARED = ("W_enc", "b_enc", "W_dec", "b_dec")
"""The parameters every architecture has; W_enc [d_in, M, d_sae] is the one whose model axis is 1."""


class StackLoss(NamedTuple):
    loss: Tensor
    """Scalar: sum over models of (mse + auxk_coefficient * aux + l1); models train independently."""
    mse: Tensor
    """[M] normalised MSE per model."""
    aux: Tensor
    """[M] AuxK loss per model."""
    l1: Tensor
    """[M] weighted sparsity penalty per model (relu: L1, jumprelu: L0)."""
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
        self.impl: type[SAE] = ARCHITECTURES[self.arch]
        self.M, self.d_in, self.d_sae = len(cfgs), first.d_in, first.d_sae
        self.unit_norm = self.impl.unit_norm_decoder
        M, d_in, d_sae = self.M, self.d_in, self.d_sae
        self.W_enc = nn.Parameter(torch.zeros(d_in, M, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(M, d_sae))
        self.W_dec = nn.Parameter(torch.zeros(M, d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(M, d_in))
        extra = self.impl.stack_tensors(self.cfgs)
        for name, t in extra.items():
            if isinstance(t, nn.Parameter):
                self.register_parameter(name, t)
            else:
                self.register_buffer(name, t)
        self.extra = list(extra)
        """Names of the architecture's tensors (model axis 0), as in SAE.stack_tensors."""
        self.param_names = [n for n, _ in self.named_parameters()]
        for name in self.param_names:
            p = getattr(self, name)
            self.register_buffer(f"adam_m_{name}", torch.zeros_like(p))
            self.register_buffer(f"adam_v_{name}", torch.zeros_like(p))
        self.register_buffer("adam_step", torch.zeros((), dtype=torch.float64))
        self.register_buffer("since_fired", torch.zeros(M, d_sae, dtype=torch.float64))
        # -- derived from the configs (rebuilt, not part of the state) ---------------------------
        self.k_list = [int(c.k or 0) for c in cfgs]
        self._derived("ks", torch.tensor(self.k_list, dtype=torch.long))
        # model of each column of a _topk_select row (K_0 zeros, K_1 ones, ...)
        self._derived("bag_of_col", torch.repeat_interleave(torch.arange(M), self.ks))
        self._derived("dead_after", torch.tensor([c.dead_after_samples for c in cfgs], dtype=torch.float64))
        self._derived("auxk_coef", torch.tensor([c.auxk_coefficient for c in cfgs]))
        self._derived("offsets", (torch.arange(M) * d_sae).view(1, M, 1))
        self.kaux = min(max(c.auxk_latents for c in cfgs), d_sae)

    def _derived(self, name: str, t: Tensor) -> None:
        self.register_buffer(name, t, persistent=False)

    # -- conversion to and from single SAEs -------------------------------------------------
    @classmethod
    @torch.no_grad()
    def from_saes(cls, saes: list[SAE]) -> SAEStack:
        stack = cls([s.cfg for s in saes])
        stack.to(saes[0].W_enc.device)
        for m, s in enumerate(saes):
            stack.W_enc[:, m] = s.W_enc
            for name in (*_SHARED[1:], *stack.extra):
                getattr(stack, name)[m] = getattr(s, name)
        return stack

    @torch.no_grad()
    def to_saes(self) -> list[SAE]:
        out = []
        for m, cfg in enumerate(self.cfgs):
            s = create_sae(cfg).to(self.W_enc.device)
            s.W_enc.copy_(self.W_enc[:, m])
            for name in (*_SHARED[1:], *self.extra):
                getattr(s, name).copy_(getattr(self, name)[m])
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

    @staticmethod
    def model_axis(key: str) -> int | None:
        """The model axis of state tensor `key` (W_enc and its Adam moments: 1), None for adam_step."""
        if key == "adam_step":
            return None
        return 1 if key in ("W_enc", "adam_m_W_enc", "adam_v_W_enc") else 0

    @torch.no_grad()
    def select(self, keep: list[int]) -> SAEStack:
        """A stack of the models at positions `keep`, carrying parameters and optimiser state."""
        new = SAEStack([self.cfgs[i] for i in keep]).to(self.W_enc.device)
        idx = torch.tensor(keep, device=self.W_enc.device)
        target = new.state_dict()
        for k, v in self.state_dict().items():
            axis = self.model_axis(k)
            target[k].copy_(v if axis is None else v.index_select(axis, idx))
        return new

    @torch.no_grad()
    def nonfinite_tensors(self) -> list[list[str]]:
        """Per model, the names of its state tensors (parameters, Adam moments, architecture
        tensors) holding NaN or inf: a model with any is lost, whatever its loss says (a NaN
        JumpReLU threshold gates every latent off and leaves the MSE finite)."""
        bad: list[list[str]] = [[] for _ in range(self.M)]
        checks = {}
        for k, v in self.state_dict().items():
            axis = self.model_axis(k)
            if axis is not None and v.is_floating_point():
                checks[k] = torch.isfinite(v.movedim(axis, 0).reshape(self.M, -1)).all(1)
        if not checks:
            return bad
        finite = torch.stack(list(checks.values())).cpu()  # one device sync for all of them
        for row, name in zip(finite, checks, strict=True):
            for m in torch.nonzero(~row).flatten().tolist():
                bad[m].append(name)
        return bad

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
        out = BagDecode.apply(
            idx, vals, self.W_dec.reshape(self.M * self.d_sae, self.d_in), offsets, self.bag_of_col
        )
        return out.view(n, self.M, self.d_in)

    def _decode(self, codes: StackCodes) -> Tensor:
        """[N, M, d_in] reconstruction of every model from its codes."""
        if codes.dense is None:
            return self._codes_decode(codes.idx, codes.vals) + self.b_dec
        return torch.einsum("nms,msd->nmd", codes.dense, self.W_dec) + self.b_dec

    @torch.no_grad()
    def _active(self, codes: StackCodes) -> Tensor:
        """[N, M, d_sae] bool: latent active."""
        if codes.dense is not None:
            return codes.dense > 0
        active = torch.zeros(
            codes.idx.shape[0], self.M * self.d_sae, dtype=torch.bool, device=codes.idx.device
        )
        active.scatter_(-1, codes.idx, codes.vals > 0)
        return active.view_as(codes.pre)

    def losses(self, x: Tensor, scale: float, dead: Tensor | None = None) -> StackLoss:
        """Training losses of every model on batch x [N, d_in]. `dead` [M, d_sae] overrides the counters."""
        codes = self.impl.stack_codes(self, x, training=True, scale=scale)
        recon = self._decode(codes)
        with torch.no_grad():
            if codes.dense is None:
                hits = torch.zeros(self.M * self.d_sae, device=x.device).index_add_(
                    0, codes.idx.reshape(-1), (codes.vals > 0).reshape(-1).float()
                )
                fired = (hits > 0).view(self.M, self.d_sae)
            else:
                fired = (codes.dense > 0).any(0)
        mse = (recon - x[:, None, :]).pow(2).sum(-1).mean(0) / scale
        zero = mse.new_zeros(self.M)
        penalty = self.impl.stack_penalty(self, codes, scale)
        l1 = zero if penalty is None else penalty
        aux = self._auxk_loss(x, codes, recon, dead) if self.impl.uses_auxk else zero
        loss = (mse + self.auxk_coef * aux + l1).sum()
        return StackLoss(loss, mse.detach(), aux.detach(), l1.detach(), fired)

    def _auxk_loss(self, x: Tensor, codes: StackCodes, recon: Tensor, dead: Tensor | None) -> Tensor:
        """[M] AuxK (OpenAI): each model's top-k_aux dead latents reconstruct its residual x - recon."""
        n = x.shape[0]
        if dead is None:
            dead = self.since_fired > self.dead_after[:, None]
        if not (bool((self.auxk_coef > 0).any()) and bool(dead.any())):
            return recon.new_zeros(self.M)
        # top-k_aux among each model's dead latents; past a model's dead count the picks are live
        # latents, masked to 0 (the reference's -inf -> ReLU 0)
        kaux = min(self.kaux, int(dead.sum(-1).max()))
        with torch.no_grad():
            aidx = codes.pre.masked_fill(~dead[None], float("-inf")).topk(kaux, dim=-1)[1]
            aflat = (aidx + self.offsets).reshape(n, -1)
            amask = dead.reshape(-1)[aflat]
        avals = codes.gather(aflat).relu() * amask
        aux_recon = self._bag_decode(aidx, avals.view(n, self.M, kaux))
        residual = (x[:, None, :] - recon).detach()
        denom = (residual - residual.mean(0)).pow(2).sum(-1).mean(0)
        aux = auxk_ratio(
            (aux_recon - residual).pow(2).sum(-1).mean(0), denom, residual.pow(2).sum(-1).mean(0)
        )
        return aux * dead.any(-1)

    @torch.no_grad()
    def evaluate(self, x: Tensor) -> StackEval:
        """Inference reconstruction and active mask of every model on x."""
        codes = self.impl.stack_codes(self, x, training=False)
        return StackEval(self._decode(codes), self._active(codes))

    # -- optimisation -----------------------------------------------------------------------
    def train_step(self, x: Tensor, scale: float, lr: float, betas=(0.9, 0.999), eps=6.25e-10) -> StackLoss:
        """One Adam step of every model on batch x (OpenAI recipe for the decoder)."""
        for p in self.parameters():
            p.grad = None
        if cpu_topk_step.usable(self, x):  # the same losses and gradients, compiled (tested against this)
            out = cpu_topk_step.losses_and_grads(self, x, scale)
        else:
            out = self.losses(x, scale)
            out.loss.backward()
        with torch.no_grad():
            if self.unit_norm:
                g, w = self.W_dec.grad, self.W_dec
                g.sub_((g * w).sum(-1, keepdim=True) * w)
            self.adam_step += 1
            b1, b2 = betas
            params = [getattr(self, n) for n in self.param_names]
            grads = [p.grad for p in params]
            ms = [getattr(self, f"adam_m_{n}") for n in self.param_names]
            vs = [getattr(self, f"adam_v_{n}") for n in self.param_names]
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
