"""What every SAE architecture shares: the config, the parameters (SAELens names and shapes),
initialisation (OpenAI's recipe), the decoder-norm constraint and the naive dense reference loss.

One architecture per file (topk.py, relu.py, batchtopk.py), each a subclass of `SAE` that says
how pre-activations become latents. Training runs many models at once through `core.sae.stack`
(the fast path); the dense `reference_loss` here is what the fast path is tested against.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from core.errors import InputError


@dataclass
class SAEConfig:
    """Shape and training objective of one SAE. Stored in cfg.json under "voxsae"."""

    architecture: str = "topk"
    """Registry name: 'topk' (OpenAI TopK), 'relu' (ReLU + decoder-norm-weighted L1) or 'batchtopk'."""
    d_in: int = 256
    """Input (embedding) dimension: 256 for the resemblyzer embedder, 192 for TitaNet."""
    d_sae: int = 200
    """Number of latents (the paper's "latent dimension")."""
    k: int | None = 20
    """Active latents per sample (TopK) or on average per sample over a batch (BatchTopK); None for relu."""
    l1_coefficient: float = 0.3
    """Weight of the L1 penalty sum_j z_j * ||W_dec_j|| / sqrt(data scale) (relu only)."""
    auxk: int | None = None
    """Latents used by the AuxK loss (dead latents reconstructing the residual); None = min(d_in // 2, d_sae)."""
    auxk_coefficient: float = 1.0 / 32.0
    """Weight of the AuxK loss (OpenAI: 1/32); 0 turns AuxK off. Ignored by relu."""
    dead_after_samples: int = 100_000
    """A latent not active on any of the last this many training samples counts as dead (for AuxK)."""
    threshold_momentum: float = 0.01
    """BatchTopK: EMA rate of the inference threshold (min selected activation per batch)."""
    seed: int = 0
    """Seed of the weight initialisation."""

    def __post_init__(self) -> None:
        from core.sae import ARCHITECTURES  # late: the registry imports this module

        if self.architecture not in ARCHITECTURES:
            raise InputError(
                f"unknown SAE architecture {self.architecture!r} (known: {', '.join(sorted(ARCHITECTURES))})"
            )
        if int(self.d_in) < 1 or int(self.d_sae) < 1:
            raise InputError(f"SAE dims must be positive (d_in={self.d_in}, d_sae={self.d_sae})")
        self.d_in, self.d_sae = int(self.d_in), int(self.d_sae)
        if self.architecture == "relu":
            self.k = None
        else:
            if self.k is None or int(self.k) < 1:
                raise InputError(f"{self.architecture} SAE needs K >= 1, got K={self.k}")
            self.k = int(self.k)
            if self.k >= self.d_sae:
                raise InputError(
                    f"K={self.k} is at or above the latent dim {self.d_sae}: a {self.architecture} SAE "
                    "needs K < latents"
                )
        if self.dead_after_samples < 1:
            raise InputError(f"dead_after_samples must be >= 1, got {self.dead_after_samples}")

    @property
    def auxk_latents(self) -> int:
        return int(self.auxk) if self.auxk else max(1, min(self.d_in // 2, self.d_sae))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise InputError(f"SAE config has unknown field(s) {sorted(unknown)}")
        return cls(**data)


class SAEOutput(NamedTuple):
    """Inference forward pass."""

    recon: Tensor
    """Reconstruction [N, d_in]."""
    latents: Tensor
    """Dense latents [N, d_sae] (>= 0)."""
    pre_acts: Tensor
    """Encoder pre-activations [N, d_sae]."""


class LossOutput(NamedTuple):
    """Training forward pass of one model (dense reference)."""

    loss: Tensor
    """Scalar: mse + auxk_coefficient * aux + l1."""
    mse: Tensor
    """Mean over the batch of ||x_hat - x||^2 divided by the data scale (mean squared distance to the mean)."""
    aux: Tensor
    """AuxK loss (0 when no latent is dead)."""
    l1: Tensor
    """L1 penalty term, already weighted (0 for TopK / BatchTopK)."""
    recon: Tensor
    latents: Tensor


def geometric_median(x: Tensor, iters: int = 50, eps: float = 1e-8) -> Tensor:
    """Weiszfeld's algorithm (OpenAI initialise b_dec to it); x [N, d] -> [d]."""
    x = x.double()
    y = x.mean(0)
    for _ in range(iters):
        w = 1.0 / (x - y).norm(dim=1).clamp_min(eps)
        y_new = (w[:, None] * x).sum(0) / w.sum()
        if (y_new - y).norm() < 1e-7 * (1 + y.norm()):
            y = y_new
            break
        y = y_new
    return y.float()


class SAE(nn.Module):
    """A sparse autoencoder: latents = act((x - b_dec) @ W_enc + b_enc); recon = latents @ W_dec + b_dec."""

    architecture: ClassVar[str] = ""
    saelens_architecture: ClassVar[str] = ""
    """What SAELens calls the inference architecture this one saves as."""
    unit_norm_decoder: ClassVar[bool] = True
    """Decoder rows kept at unit norm (gradient projected, renormalised after each step)."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.init_weights()

    # -- initialisation ---------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self, b_dec: Tensor | None = None) -> None:
        """OpenAI: encoder Kaiming-uniform, decoder = encoder transposed with unit-norm rows, b_enc = 0,
        b_dec = the given vector (geometric median / mean of the data) or 0."""
        gen = torch.Generator().manual_seed(int(self.cfg.seed))
        bound = 1.0 / math.sqrt(self.cfg.d_in)  # kaiming_uniform(a=sqrt(5)) of nn.Linear
        w = (torch.rand(self.cfg.d_sae, self.cfg.d_in, generator=gen) * 2 - 1) * bound
        self.W_enc.copy_(w.T)
        self.W_dec.copy_(w / w.norm(dim=1, keepdim=True).clamp_min(1e-12))
        self.b_enc.zero_()
        self.b_dec.copy_(b_dec if b_dec is not None else torch.zeros(self.cfg.d_in))

    # -- inference --------------------------------------------------------------------------
    def pre_acts(self, x: Tensor) -> Tensor:
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def activate(self, pre: Tensor) -> Tensor:
        """Inference activation: pre-activations -> dense latents (>= 0)."""
        raise NotImplementedError

    def train_activate(self, pre: Tensor) -> Tensor:
        """Training activation (BatchTopK differs from its inference rule)."""
        return self.activate(pre)

    def encode(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.activate(self.pre_acts(x))

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.W_dec + self.b_dec

    def forward(self, x: Tensor) -> SAEOutput:
        self._check_input(x)
        pre = self.pre_acts(x)
        z = self.activate(pre)
        return SAEOutput(self.decode(z), z, pre)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 2 or x.shape[1] != self.cfg.d_in:
            raise InputError(f"SAE input must be [N, {self.cfg.d_in}], got {tuple(x.shape)}")

    # -- training (naive dense reference; the stack in core.sae.stack is the fast path) -------
    def aux_loss(self, x: Tensor, pre: Tensor, recon: Tensor, dead: Tensor | None) -> Tensor:
        """AuxK (OpenAI): the top-k_aux dead latents reconstruct the residual x - recon."""
        zero = pre.new_zeros(())
        if dead is None or self.cfg.auxk_coefficient == 0 or not bool(dead.any()):
            return zero
        kaux = min(self.cfg.auxk_latents, self.cfg.d_sae)
        masked = pre.masked_fill(~dead[None, :], float("-inf"))
        vals, idx = masked.topk(kaux, dim=-1)
        z_aux = torch.zeros_like(pre).scatter(-1, idx, vals.relu())
        residual = (x - recon).detach()
        aux_recon = z_aux @ self.W_dec
        denom = (residual - residual.mean(0)).pow(2).sum(-1).mean()
        return torch.nan_to_num((aux_recon - residual).pow(2).sum(-1).mean() / denom)

    def penalty(self, z: Tensor, scale: float) -> Tensor:
        return z.new_zeros(())

    def reference_loss(self, x: Tensor, scale: float, dead: Tensor | None = None) -> LossOutput:
        """Dense training loss of this model on batch x; `scale` = mean ||x - mean||^2 of the data."""
        pre = self.pre_acts(x)
        z = self.train_activate(pre)
        recon = self.decode(z)
        mse = (recon - x).pow(2).sum(-1).mean() / scale
        aux = self.aux_loss(x, pre, recon, dead) if self.architecture != "relu" else mse.new_zeros(())
        l1 = self.penalty(z, scale)
        loss = mse + self.cfg.auxk_coefficient * aux + l1
        return LossOutput(loss, mse, aux, l1, recon, z)

    @torch.no_grad()
    def remove_parallel_grads(self) -> None:
        """Drop the part of each decoder row's gradient that would change its norm."""
        if self.unit_norm_decoder and self.W_dec.grad is not None:
            g, w = self.W_dec.grad, self.W_dec
            g.sub_((g * w).sum(-1, keepdim=True) * w)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        if self.unit_norm_decoder:
            self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    # -- checkpoint hooks -------------------------------------------------------------------
    def extra_state_tensors(self) -> dict[str, Tensor]:
        """Tensors beyond W_enc/b_enc/W_dec/b_dec saved in sae_weights.safetensors (SAELens names)."""
        return {}

    def load_extra_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        pass

    def saelens_cfg(self) -> dict[str, Any]:
        """Architecture-specific SAELens cfg.json fields."""
        return {}
