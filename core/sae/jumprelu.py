"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead"), as SAELens trains it.

Each latent j has a threshold theta_j >= 0: z_j = pre_j * H(pre_j - theta_j) (H the Heaviside step),
and the sparsity penalty is L0 itself, l0_coefficient * sum_j H(pre_j - theta_j), in place of L1.
H has no useful gradient, so both the activation and the penalty pass one to theta through a
straight-through estimator with a rectangle kernel of width `bandwidth` (SAELens's JumpReLU and
Step autograd functions, DeepMind's variant: the estimator reaches theta only, not the encoder):

    d z_j / d theta_j   ~ -(theta_j / bandwidth) * rect((pre_j - theta_j) / bandwidth)
    d H_j / d theta_j   ~ -(1 / bandwidth) * rect((pre_j - theta_j) / bandwidth)

theta is trained directly (as the installed SAELens does, its issue #494, rather than as
log(theta)) and projected to >= 0 before each training forward pass. No K, no AuxK; unit-norm
decoder rows like TopK (L0 does not care about latent scale, so the constraint costs nothing and
keeps the decoder comparable across the grid). Saved as SAELens's 'jumprelu' with `threshold`.

Options (SAEConfig.options; `train --l0-coefficient/--bandwidth/--init-threshold`):
* `bandwidth` and `init_threshold` are in units of the data's per-dimension RMS,
  sqrt(scale / d_in) (scale = mean ||x - mean||^2), so that one default fits a unit-norm embedder
  and an unnormalised one alike; SAELens's absolute numbers assume inputs normalised to RMS 1 per
  dimension. bandwidth 0.05 is SAELens's. init_threshold 0.5 (SAELens: 0.01, nearly dense at
  first) starts training sparse, so the validation NMSE falls from the first epoch on: from a
  dense start it rises while L0 drops, and early stopping (which watches it) ended runs at epoch 3.
* `l0_coefficient` weighs one active latent against the MSE normalised by the data scale (the MSE
  of predicting the mean is 1). 3e-3 on the embedded default (resemblyzer, --scale 0.5, early
  stop): L0 22 / 22 / 18 at latents 100 / 200 / 600 - the middle of the paper's K range - with
  NMSE 0.049 / 0.050 / 0.047 (TopK K20 there: 0.047 / 0.041 / 0.039).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from core.sae.base import SAE, Option, SAEConfig, StackCodes, data_unit, threshold_gate


def rectangle(x: Tensor) -> Tensor:
    return ((x > -0.5) & (x < 0.5)).to(x)


class JumpReLUFn(torch.autograd.Function):
    """x * H(x - threshold); the threshold's gradient through the rectangle-kernel estimator.

    Threshold [d_sae] for one model (x [N, d_sae]) or [M, d_sae] for a stack (x [N, M, d_sae]);
    bandwidth broadcasts against the threshold."""

    @staticmethod
    def forward(ctx, x: Tensor, threshold: Tensor, bandwidth: Tensor) -> Tensor:
        ctx.save_for_backward(x, threshold, bandwidth)
        return x * (x > threshold).to(x)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, threshold, bandwidth = ctx.saved_tensors
        ste = (threshold / bandwidth) * rectangle((x - threshold) / bandwidth) * g
        return (x > threshold) * g, torch.sum(-ste, dim=0), None


class StepFn(torch.autograd.Function):
    """H(x - threshold); gradient to the threshold only (rectangle-kernel estimator)."""

    @staticmethod
    def forward(ctx, x: Tensor, threshold: Tensor, bandwidth: Tensor) -> Tensor:
        ctx.save_for_backward(x, threshold, bandwidth)
        return (x > threshold).to(x)

    @staticmethod
    def backward(ctx, g: Tensor):
        x, threshold, bandwidth = ctx.saved_tensors
        ste = (1.0 / bandwidth) * rectangle((x - threshold) / bandwidth) * g
        return None, torch.sum(-ste, dim=0), None


def l0_penalty(coef: Tensor | float, pre: Tensor, threshold: Tensor, bandwidth: Tensor) -> Tensor:
    """coef * mean over samples of the number of active latents (one model, or [M] for a stack)."""
    return coef * StepFn.apply(pre, threshold, bandwidth).sum(-1).mean(0)


class JumpReLUSAE(SAE):
    architecture = "jumprelu"
    saelens_architecture = "jumprelu"
    uses_k = False
    uses_auxk = False
    activation_bytes = (24.0, 18.0)  # measured: training step, inference pass
    options = {
        "l0_coefficient": Option(
            3e-3, "jumprelu: weight of the L0 penalty (one active latent against the normalised MSE)", 0.0
        ),
        "bandwidth": Option(
            0.05,
            "jumprelu: width of the straight-through estimator's rectangle kernel (data-relative)",
            0.0,
            strict=True,
        ),
        "init_threshold": Option(0.5, "jumprelu: initial threshold of every latent (data-relative)", 0.0),
    }

    def register_extra(self) -> None:
        self.threshold = nn.Parameter(torch.zeros(self.cfg.d_sae))

    @torch.no_grad()
    def init_weights(self, b_dec: Tensor | None = None, data_scale: float | None = None) -> None:
        super().init_weights(b_dec, data_scale)
        self.threshold.fill_(self.cfg.options["init_threshold"] * data_unit(data_scale, self.cfg.d_in))

    def _bandwidth(self, scale: float) -> Tensor:
        bw = self.cfg.options["bandwidth"] * data_unit(scale, self.cfg.d_in)
        return torch.tensor(bw, dtype=self.threshold.dtype, device=self.threshold.device)

    def activate(self, pre: Tensor) -> Tensor:
        return threshold_gate(pre, self.threshold)

    def train_activate(self, pre: Tensor, scale: float = 1.0) -> Tensor:
        with torch.no_grad():
            self.threshold.clamp_(min=0.0)
        return JumpReLUFn.apply(pre, self.threshold, self._bandwidth(scale))

    def penalty(self, pre: Tensor, z: Tensor, scale: float) -> Tensor:
        coef = self.cfg.options["l0_coefficient"]
        return l0_penalty(coef, pre, self.threshold, self._bandwidth(scale))

    # -- stacked ----------------------------------------------------------------------------
    @classmethod
    def stack_tensors(cls, cfgs: list[SAEConfig]) -> dict[str, Tensor]:
        return {"threshold": nn.Parameter(torch.zeros(len(cfgs), cfgs[0].d_sae))}

    @staticmethod
    def _stack_option(stack, name: str) -> Tensor:
        """[M, 1] per-model option values on the stack's device."""
        return torch.tensor([[c.options[name]] for c in stack.cfgs], device=stack.threshold.device)

    @classmethod
    def stack_activate(cls, stack, pre: Tensor, *, training: bool, scale: float = 1.0) -> Tensor:
        if not training:
            return threshold_gate(pre, stack.threshold)
        with torch.no_grad():
            stack.threshold.clamp_(min=0.0)
        bandwidth = cls._stack_option(stack, "bandwidth") * data_unit(scale, stack.d_in)
        return JumpReLUFn.apply(pre, stack.threshold, bandwidth)

    @classmethod
    def stack_penalty(cls, stack, codes: StackCodes, scale: float) -> Tensor:
        bandwidth = cls._stack_option(stack, "bandwidth") * data_unit(scale, stack.d_in)
        coef = cls._stack_option(stack, "l0_coefficient")[:, 0]
        return l0_penalty(coef, codes.pre, stack.threshold, bandwidth)

    # -- checkpoint -------------------------------------------------------------------------
    @classmethod
    def extra_tensor_shapes(cls, cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
        return {"threshold": (cfg.d_sae,)}
