"""What every SAE architecture shares, and the interface through which an architecture says
everything about itself.

An architecture is one file in core/sae/ holding one subclass of `SAE`, registered by name in
core/sae/__init__.py's ARCHITECTURES; nothing else in core knows architectures by name. The class
carries:

* config: `uses_k` (a K per model, in its name and validation), `uses_auxk` (OpenAI's AuxK loss on
  dead latents), `options` (its own hyper-parameters with their defaults and smallest values,
  kept in SAEConfig.options and flattened into cfg.json's config; every value must be finite)
  and `check_config`;
* memory: `activation_bytes` (what a batch costs per latent, for the grid's memory estimate);
* inference: `activate` (pre-activations -> latents), `register_extra` / `init_weights` for
  parameters beyond W_enc, b_enc, W_dec, b_dec;
* the checkpoint: `saelens_architecture`, `saelens_cfg`, `extra_tensor_shapes`,
  `extra_state_tensors` / `load_extra_state_tensors` (SAELens names and shapes);
* training one model (the naive dense reference): `train_activate`, `penalty`;
* training a stack of models (core.sae.stack, the fast path): `stack_tensors` (per-model
  parameters and buffers beyond the shared ones), `stack_codes` (encode every model of a stack
  on a batch; the default runs the stack's dense encoder and `stack_activate`), `stack_penalty`.

Shared here: the config, the parameters (SAELens names and shapes), initialisation (OpenAI's
recipe), the decoder-norm constraint and the dense reference loss that the fast path is tested
against.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from core.errors import InputError

if TYPE_CHECKING:
    from core.sae.stack import SAEStack


def number_problem(value: Any, minimum: float = -math.inf, strict: bool = False) -> str | None:
    """Why `value` is not an allowed hyper-parameter value ("must be a finite number > 0"), or
    None when it is: every float setting must be finite (a NaN learning rate trains a NaN model
    that looks finished) and at least `minimum` (above it when `strict`)."""
    bound = "" if minimum == -math.inf else f" {'>' if strict else '>='} {minimum:g}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return f"must be a finite number{bound}"
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        return f"must be a finite number{bound}"
    return None


def auxk_ratio(error: Tensor, residual_variance: Tensor, residual_power: Tensor) -> Tensor:
    """AuxK loss: the dead latents' reconstruction error over the residual's variance in the batch,
    0 where that variance is (next to) nothing against the residual's own power: a batch of one
    row, or of identical rows (the last partial batch can hold one; a pool can repeat rows).
    Dividing by that gave inf or 1e12-scale losses, and then inf weights. MIN_RELATIVE_VARIANCE
    is far below any real batch's ratio (about 0.5-1), so those are computed as before."""
    ok = residual_variance > MIN_RELATIVE_VARIANCE * residual_power
    return torch.where(ok, torch.nan_to_num(error / torch.where(ok, residual_variance, 1.0)), 0.0)


MIN_RELATIVE_VARIANCE = 1e-6


class Option(NamedTuple):
    """One architecture-specific hyper-parameter (SAE.options)."""

    default: float
    help: str
    minimum: float = -math.inf
    """Smallest allowed value (every value must also be finite)."""
    strict: bool = False
    """The value must lie above `minimum`, not at it."""

    def problem(self, value: Any) -> str | None:
        """Why `value` is not allowed for this option, or None."""
        return number_problem(value, self.minimum, self.strict)


@dataclass
class SAEConfig:
    """Shape and training objective of one SAE. Stored in cfg.json under "voxsae"."""

    architecture: str = "topk"
    """Registry name (core.sae.ARCHITECTURES): 'topk' (OpenAI TopK), 'relu' (ReLU +
    decoder-norm-weighted L1), 'batchtopk', 'jumprelu'."""
    d_in: int = 256
    """Input (embedding) dimension: 256 for the resemblyzer embedder, 192 for TitaNet."""
    d_sae: int = 200
    """Number of latents (the paper's "latent dimension")."""
    k: int | None = 20
    """Active latents per sample (TopK) or on average per sample over a batch (BatchTopK); None for
    architectures without K (`uses_k` False: relu, jumprelu)."""
    l1_coefficient: float = 0.3
    """Weight of the L1 penalty sum_j z_j * ||W_dec_j|| / sqrt(data scale) (relu only)."""
    auxk: int | None = None
    """Latents used by the AuxK loss (dead latents reconstructing the residual); None = min(d_in // 2, d_sae)."""
    auxk_coefficient: float = 1.0 / 32.0
    """Weight of the AuxK loss (OpenAI: 1/32); 0 turns AuxK off. Used by architectures with `uses_auxk`."""
    dead_after_samples: int = 100_000
    """A latent not active on any of the last this many training samples counts as dead (for AuxK)."""
    threshold_momentum: float = 0.01
    """BatchTopK: EMA rate of the inference threshold (min selected activation per batch)."""
    seed: int = 0
    """Seed of the weight initialisation."""
    options: dict[str, float] = field(default_factory=dict)
    """The architecture's own hyper-parameters (its `options`, defaults filled in), e.g. jumprelu's
    l0_coefficient. The fields above stay shared because every cfg.json written so far holds them;
    an architecture added since keeps its settings here, flattened into to_dict()."""

    def __post_init__(self) -> None:
        from core.sae import ARCHITECTURES  # late: the registry imports this module

        if self.architecture not in ARCHITECTURES:
            raise InputError(
                f"unknown SAE architecture {self.architecture!r} (known: {', '.join(sorted(ARCHITECTURES))})"
            )
        if int(self.d_in) < 1 or int(self.d_sae) < 1:
            raise InputError(f"SAE dims must be positive (d_in={self.d_in}, d_sae={self.d_sae})")
        self.d_in, self.d_sae = int(self.d_in), int(self.d_sae)
        ARCHITECTURES[self.architecture].check_config(self)
        if self.dead_after_samples < 1:
            raise InputError(f"dead_after_samples must be >= 1, got {self.dead_after_samples}")
        for name in ("l1_coefficient", "auxk_coefficient"):
            why = number_problem(getattr(self, name), 0.0)
            if why:
                raise InputError(f"{self.architecture} SAE {name}={getattr(self, name)!r}: {why}")
        if not 0 < self.threshold_momentum <= 1:  # NaN fails this too
            raise InputError(
                f"{self.architecture} SAE threshold_momentum={self.threshold_momentum!r}: must be in (0, 1]"
            )

    @property
    def auxk_latents(self) -> int:
        return int(self.auxk) if self.auxk else max(1, min(self.d_in // 2, self.d_sae))

    def to_dict(self) -> dict[str, Any]:
        """The shared fields and the options in one flat dict (what cfg.json's config holds)."""
        out = asdict(self)
        options = out.pop("options")
        return {**out, **options}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        from core.sae import ARCHITECTURES

        names = {f.name for f in fields(cls)} - {"options"}
        arch = ARCHITECTURES.get(data.get("architecture", cls.architecture))
        own = set(arch.options) if arch is not None else set()
        unknown = set(data) - names - own
        if unknown:
            raise InputError(f"SAE config has unknown field(s) {sorted(unknown)}")
        shared = {k: v for k, v in data.items() if k in names}
        return cls(**shared, options={k: v for k, v in data.items() if k in own})


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
    """Sparsity penalty, already weighted (relu: L1, jumprelu: L0; 0 for TopK / BatchTopK)."""
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


class StackCodes(NamedTuple):
    """Every model's latents on one batch, as an architecture's `SAE.stack_codes` returns them:
    dense [N, M, d_sae] latents, or the TopK fast path's (flat indices, values) pairs."""

    pre: Tensor
    """[N, M, d_sae] encoder pre-activations (the AuxK loss picks dead latents from them)."""
    gather: Callable[[Tensor], Tensor]
    """Flat indices [N, J] into the M * d_sae stacked latents -> the pre-activations there, with
    the encoder's gradient (the AuxK loss's values)."""
    dense: Tensor | None = None
    """[N, M, d_sae] latents (dense architectures), else None."""
    idx: Tensor | None = None
    """[N, sum K] flat indices of the active latents, model by model (`SAEStack._topk_select`)."""
    vals: Tensor | None = None
    """[N, sum K] their values."""


def dense_codes(pre: Tensor, z: Tensor) -> StackCodes:
    """StackCodes of a dense architecture: latents z [N, M, d_sae] from pre-activations pre."""
    return StackCodes(pre, lambda idx: pre.reshape(pre.shape[0], -1).gather(1, idx), dense=z)


def threshold_gate(pre: Tensor, threshold: Tensor) -> Tensor:
    """SAELens's 'jumprelu' inference rule (BatchTopK and JumpReLU save as it): ReLU(pre) where
    pre > threshold, else 0."""
    return pre.relu() * (pre > threshold).to(pre.dtype)


def data_unit(scale: float | None, d_in: int) -> float:
    """sqrt(scale / d_in): the per-dimension RMS of data whose mean ||x - mean||^2 is `scale` (1
    without data) - the unit of data-relative settings such as jumprelu's bandwidth."""
    return math.sqrt(scale / d_in) if scale else 1.0


class SAE(nn.Module):
    """A sparse autoencoder: latents = act((x - b_dec) @ W_enc + b_enc); recon = latents @ W_dec + b_dec."""

    architecture: ClassVar[str] = ""
    saelens_architecture: ClassVar[str] = ""
    """What SAELens calls the inference architecture this one saves as."""
    unit_norm_decoder: ClassVar[bool] = True
    """Decoder rows kept at unit norm (gradient projected, renormalised after each step)."""
    uses_k: ClassVar[bool] = True
    """Each model has a K (cfg.k, validated 1 <= K < d_sae; models named arch-L{d_sae}-K{k});
    without, cfg.k is None and models are named arch-L{d_sae}."""
    uses_auxk: ClassVar[bool] = True
    """Trained with the AuxK loss (dead latents reconstruct the residual)."""
    compiled_cpu_step: ClassVar[bool] = False
    """On CPU, its stack trains through core.sae.cpu_topk_step (the K largest pre-activations,
    ReLU'd, no penalty) instead of autograd."""
    options: ClassVar[dict[str, Option]] = {}
    """The architecture's own hyper-parameters: name -> (default, help, smallest value). Kept in
    SAEConfig.options; the `train` command offers each as --NAME (underscores as dashes)."""
    activation_bytes: ClassVar[tuple[float, float]] = (24.0, 18.0)
    """Bytes per (sample, latent) a stack of this architecture holds at the peak of a training step
    and of an inference pass (pre-activations, latents, gates, gradients), measured with
    psutil on CPU: core.training.memory estimates a grid's memory from them before allocating."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        d_in, d_sae = cfg.d_in, cfg.d_sae
        self.W_enc = nn.Parameter(torch.zeros(d_in, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(d_sae))
        self.W_dec = nn.Parameter(torch.zeros(d_sae, d_in))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_extra()
        self.init_weights()

    # -- config -----------------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        """Validate cfg for this architecture and fill in its defaults (in place)."""
        if cls.uses_k:
            if cfg.k is None or int(cfg.k) < 1:
                raise InputError(f"{cfg.architecture} SAE needs K >= 1, got K={cfg.k}")
            cfg.k = int(cfg.k)
            if cfg.k >= cfg.d_sae:
                raise InputError(
                    f"K={cfg.k} is at or above the latent dim {cfg.d_sae}: a {cfg.architecture} SAE "
                    "needs K < latents"
                )
        else:
            cfg.k = None
        unknown = set(cfg.options) - set(cls.options)
        if unknown:
            known = ", ".join(cls.options) or "none"
            raise InputError(f"{cfg.architecture} SAE has no option {sorted(unknown)} (its options: {known})")
        for name, value in cfg.options.items():
            why = cls.options[name].problem(value)
            if why:
                raise InputError(f"{cfg.architecture} SAE option {name}={value!r}: {why}")
        cfg.options = {name: float(cfg.options.get(name, opt.default)) for name, opt in cls.options.items()}

    # -- initialisation ---------------------------------------------------------------------
    def register_extra(self) -> None:
        """Create the architecture's parameters / buffers beyond W_enc, b_enc, W_dec, b_dec."""

    @torch.no_grad()
    def init_weights(self, b_dec: Tensor | None = None, data_scale: float | None = None) -> None:
        """OpenAI: encoder Kaiming-uniform, decoder = encoder transposed with unit-norm rows, b_enc = 0,
        b_dec = the given vector (geometric median / mean of the data) or 0. `data_scale` (mean
        ||x - mean||^2 of the training data) is for architectures with data-relative settings."""
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

    # -- training one model (naive dense reference; core.sae.stack is the fast path) ---------
    def train_activate(self, pre: Tensor, scale: float = 1.0) -> Tensor:
        """Training activation (BatchTopK and JumpReLU differ from their inference rule);
        `scale` = mean ||x - mean||^2 of the data."""
        return self.activate(pre)

    def penalty(self, pre: Tensor, z: Tensor, scale: float) -> Tensor:
        """Sparsity penalty of the training loss (relu: weighted L1, jumprelu: L0), already weighted."""
        return z.new_zeros(())

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
        return auxk_ratio((aux_recon - residual).pow(2).sum(-1).mean(), denom, residual.pow(2).sum(-1).mean())

    def reference_loss(self, x: Tensor, scale: float, dead: Tensor | None = None) -> LossOutput:
        """Dense training loss of this model on batch x; `scale` = mean ||x - mean||^2 of the data."""
        pre = self.pre_acts(x)
        z = self.train_activate(pre, scale)
        recon = self.decode(z)
        mse = (recon - x).pow(2).sum(-1).mean() / scale
        aux = self.aux_loss(x, pre, recon, dead) if self.uses_auxk else mse.new_zeros(())
        l1 = self.penalty(pre, z, scale)
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

    # -- training a stack of models (core.sae.stack calls these) -----------------------------
    @classmethod
    def stack_tensors(cls, cfgs: list[SAEConfig]) -> dict[str, Tensor]:
        """Per-model tensors of a stack beyond the shared ones, model axis first, named like the
        single model's attribute they come from and go back to (SAEStack.from_saes / to_saes). An
        nn.Parameter is trained (with Adam moments), a plain tensor is a buffer; both are
        training state (saved for resuming)."""
        return {}

    @classmethod
    def stack_codes(cls, stack: SAEStack, x: Tensor, *, training: bool, scale: float = 1.0) -> StackCodes:
        """Every model's latents on batch x [N, d_in]: training rule (with autograd) or inference rule."""
        pre = stack.pre_acts(x)
        return dense_codes(pre, cls.stack_activate(stack, pre, training=training, scale=scale))

    @classmethod
    def stack_activate(cls, stack: SAEStack, pre: Tensor, *, training: bool, scale: float = 1.0) -> Tensor:
        """Dense latents [N, M, d_sae] from a stack's pre-activations (what the default stack_codes uses)."""
        raise NotImplementedError

    @classmethod
    def stack_penalty(cls, stack: SAEStack, codes: StackCodes, scale: float) -> Tensor | None:
        """[M] weighted sparsity penalty per model (the stacked `penalty`); None when there is none."""
        return None

    # -- checkpoint -------------------------------------------------------------------------
    @classmethod
    def extra_tensor_shapes(cls, cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
        """Shapes of the tensors beyond W_enc/b_enc/W_dec/b_dec in sae_weights.safetensors (SAELens names)."""
        return {}

    def extra_state_tensors(self) -> dict[str, Tensor]:
        """The tensors of extra_tensor_shapes, by default the attributes of those names."""
        return {name: getattr(self, name) for name in self.extra_tensor_shapes(self.cfg)}

    @torch.no_grad()
    def load_extra_state_tensors(self, tensors: dict[str, Tensor]) -> None:
        for name in self.extra_tensor_shapes(self.cfg):
            getattr(self, name).copy_(tensors[name])

    def saelens_cfg(self) -> dict[str, Any]:
        """Architecture-specific SAELens cfg.json fields."""
        return {}
