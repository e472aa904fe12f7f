"""core.sae.cpu_topk_step: the compiled TopK training step against the autograd path (the reference),
on losses, every gradient, the fired mask and whole Adam steps, with AuxK on and off and the rows
split over one or several threads."""

from __future__ import annotations

import pytest
import torch

from core.sae import SAEConfig, cpu_topk, cpu_topk_step, create_sae
from core.sae.stack import SAEStack

pytestmark = pytest.mark.skipif(not cpu_topk.available(), reason="numba not installed")


def _stack(d_sae: int, ks: list[int], d_in: int = 16, seed: int = 0) -> SAEStack:
    torch.manual_seed(seed)
    saes = [
        create_sae(SAEConfig("topk", d_in=d_in, d_sae=d_sae, k=k, seed=seed + i)) for i, k in enumerate(ks)
    ]
    stack = SAEStack.from_saes(saes)
    with torch.no_grad():  # biases off zero, so every bias path of the gradient is exercised
        stack.b_enc.normal_(0, 0.1)
        stack.b_dec.normal_(0, 0.3)
    return stack


def _reference(stack: SAEStack, x, scale, dead):
    for p in stack.parameters():
        p.grad = None
    out = stack.losses(x, scale, dead=dead)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in stack.named_parameters()}
    for p in stack.parameters():
        p.grad = None
    return out, grads


@pytest.mark.parametrize(
    "d_sae,ks,rows,dead_fraction,n_threads",
    [
        (60, [3, 5, 9], 200, 0.0, 1),  # no dead latent: AuxK off
        (60, [3, 5, 9], 200, 0.5, 1),
        (128, [20], 300, 0.9, 2),  # rows split over two threads
        (40, [39, 1], 70, 1.0, 1),  # K next to d_sae; every latent dead
        (50, [4, 7], 257, 0.3, 3),  # uneven row split
    ],
)
def test_losses_and_grads_match_autograd(d_sae, ks, rows, dead_fraction, n_threads, monkeypatch):
    stack = _stack(d_sae, ks)
    x = torch.randn(rows, 16) * 2 + 0.3
    dead = torch.rand(len(ks), d_sae, generator=torch.Generator().manual_seed(1)) < dead_fraction
    ref, ref_grads = _reference(stack, x, 1.7, dead)
    monkeypatch.setattr(cpu_topk_step, "threads", lambda: n_threads)
    monkeypatch.setattr(cpu_topk_step, "MIN_ROWS_PER_THREAD", 16)
    got = cpu_topk_step.losses_and_grads(stack, x, 1.7, dead)
    torch.testing.assert_close(got.mse, ref.mse, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.aux, ref.aux, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.loss, ref.loss.detach(), atol=1e-4, rtol=1e-5)
    assert torch.equal(got.fired, ref.fired)
    if dead_fraction > 0:
        assert bool((got.aux > 0).all())  # AuxK active where latents are dead
    else:
        assert bool((got.aux == 0).all())
    for name, want in ref_grads.items():
        torch.testing.assert_close(getattr(stack, name).grad, want, atol=1e-5, rtol=1e-4, msg=name)


def test_a_second_call_does_not_carry_the_first_ones_sums():
    # the per-thread buffers are reused across calls: they must start from zero every time
    stack = _stack(60, [5, 9])
    x1, x2 = torch.randn(128, 16), torch.randn(128, 16) * 3
    cpu_topk_step.losses_and_grads(stack, x1, 1.0)
    got = cpu_topk_step.losses_and_grads(stack, x2, 1.0)
    got_grads = {n: p.grad.clone() for n, p in stack.named_parameters()}
    kept_fired = got.fired.clone()
    ref, grads = _reference(stack, x2, 1.0, None)
    torch.testing.assert_close(got.mse, ref.mse, atol=1e-5, rtol=1e-5)
    for name, want in grads.items():
        torch.testing.assert_close(got_grads[name], want, atol=1e-5, rtol=1e-4, msg=name)
    # and a batch of another size gets buffers of its size
    again = cpu_topk_step.losses_and_grads(stack, x2[:70], 1.0)
    ref, _ = _reference(stack, x2[:70], 1.0, None)
    torch.testing.assert_close(again.mse, ref.mse, atol=1e-5, rtol=1e-5)
    assert torch.equal(got.fired, kept_fired)  # a returned mask is the caller's, not a buffer


def test_train_steps_follow_the_autograd_path(monkeypatch):
    # 30 Adam steps with dead latents (AuxK on from step 0): the compiled path and autograd agree
    fast, slow = _stack(64, [4, 8]), _stack(64, [4, 8])
    for s in (fast, slow):
        s.dead_after.fill_(100.0)  # latents idle for 100 samples count as dead
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(96, 16, generator=g) for _ in range(30)]
    for x in batches:
        a = fast.train_step(x, 1.0, 1e-3)
        with monkeypatch.context() as m:
            m.setattr(cpu_topk_step, "usable", lambda stack, x: False)
            b = slow.train_step(x, 1.0, 1e-3)
        torch.testing.assert_close(a.mse, b.mse, atol=1e-4, rtol=1e-4)
    assert float(a.aux.sum()) > 0
    for name in ("W_enc", "b_enc", "W_dec", "b_dec", "adam_v_W_dec", "since_fired"):
        torch.testing.assert_close(getattr(fast, name), getattr(slow, name), atol=2e-4, rtol=1e-3, msg=name)


def test_usable_only_for_cpu_float32_topk():
    stack = _stack(40, [5])
    assert cpu_topk_step.usable(stack, torch.zeros(4, 16))
    assert not cpu_topk_step.usable(stack, torch.zeros(4, 16, dtype=torch.float64))
    assert not cpu_topk_step.usable(stack, torch.zeros(0, 16))
    relu = SAEStack.from_saes([create_sae(SAEConfig("relu", d_in=16, d_sae=40))])
    assert not cpu_topk_step.usable(relu, torch.zeros(4, 16))


def test_segmented_topk_values_are_the_picked_pre_activations():
    pre = torch.randn(130, 3 * 50, generator=torch.Generator().manual_seed(0))
    idx, vals = cpu_topk.segmented_topk(pre, 50, [3, 7, 12], values=True)
    assert torch.equal(vals, pre.gather(1, idx))
