"""JumpReLU: config and options, the training loss and straight-through gradients against SAELens's
own JumpReLUTrainingSAE, the stacked fast path against the single-model reference, SAELens loading
our checkpoint, and a grid run (the `train` command) on synthetic ground truth, resumable."""

from __future__ import annotations

import json

import pytest
import torch
from sae_synth import recovery, segments_for, synthetic_embeddings

from core import cli
from core.errors import InputError
from core.sae import SAEConfig, create_sae
from core.sae.catalog import list_models, open_model
from core.sae.checkpoint import load_sae, save_sae
from core.sae.stack import SAEStack
from core.training.config import TrainConfig
from core.training.grid import model_name, train_grid
from core.training.trainer import TrainingInterrupted
from core.workspace.workspace import Workspace


def _jumprelu(d_in=12, d_sae=30, seed=0, **options):
    """A JumpReLU SAE off its initialisation: biases set, thresholds spread over [0.02, 0.3]."""
    sae = create_sae(SAEConfig("jumprelu", d_in=d_in, d_sae=d_sae, seed=seed, options=options))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(d_in, generator=gen))
        sae.b_enc.copy_(0.1 * torch.randn(d_sae, generator=gen))
        sae.threshold.copy_(0.02 + 0.28 * torch.rand(d_sae, generator=gen))
    return sae


def test_config_options_and_name():
    cfg = SAEConfig("jumprelu", d_in=8, d_sae=10, k=3)
    assert cfg.k is None  # no K, like relu
    assert set(cfg.options) == {"l0_coefficient", "bandwidth", "init_threshold"}
    d = cfg.to_dict()
    assert "options" not in d and d["bandwidth"] == 0.05 and d["k"] is None
    assert SAEConfig.from_dict(d) == cfg
    assert "options" not in SAEConfig("topk", d_in=8, d_sae=10, k=2).to_dict()  # older cfg.json unchanged
    with pytest.raises(InputError, match="no option"):
        SAEConfig("jumprelu", d_in=8, d_sae=10, options={"gamma": 1.0})
    with pytest.raises(InputError, match="no option"):
        SAEConfig("topk", d_in=8, d_sae=10, k=2, options={"l0_coefficient": 1.0})
    with pytest.raises(InputError, match=r"option bandwidth=0\.0: must be a finite number > 0"):
        SAEConfig("jumprelu", d_in=8, d_sae=10, options={"bandwidth": 0.0})
    with pytest.raises(InputError, match=r"option l0_coefficient=inf: must be a finite number >= 0"):
        SAEConfig("jumprelu", d_in=8, d_sae=10, options={"l0_coefficient": float("inf")})
    with pytest.raises(InputError, match=r"option init_threshold=nan: must be a finite number >= 0"):
        SAEConfig("jumprelu", d_in=8, d_sae=10, options={"init_threshold": float("nan")})
    assert (
        SAEConfig("jumprelu", d_in=8, d_sae=10, options={"init_threshold": 0.0}).options["init_threshold"]
        == 0
    )
    with pytest.raises(InputError, match="unknown field"):
        SAEConfig.from_dict({**SAEConfig("topk", d_in=8, d_sae=10, k=2).to_dict(), "bandwidth": 0.1})
    assert model_name("jumprelu", 200) == "jumprelu-L200" == model_name("jumprelu", 200, 20)
    # data-relative initial threshold: init_threshold x the per-dimension RMS of the data
    sae = create_sae(SAEConfig("jumprelu", d_in=8, d_sae=10, options={"init_threshold": 0.5}))
    sae.init_weights(data_scale=8 * 0.04)
    torch.testing.assert_close(sae.threshold.detach(), torch.full((10,), 0.5 * 0.2))


def test_training_loss_and_gradients_match_saelens():
    """Same weights, threshold and batch: our dense reference loss and every gradient (the
    threshold's through the rectangle-kernel estimator included) equal SAELens's JumpReLU
    training SAE's. With scale = d_in the data unit is 1, so the bandwidth is the same number, and
    our MSE (divided by the scale) is SAELens's / d_in: so is an L0 coefficient of c / d_in."""
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    d_in, d_sae, coef, bw = 12, 30, 0.5, 0.05
    ours = _jumprelu(d_in, d_sae, l0_coefficient=coef / d_in, bandwidth=bw)
    theirs = JumpReLUTrainingSAE(
        JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l0_coefficient=coef, jumprelu_bandwidth=bw)
    )
    names = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")
    with torch.no_grad():
        for name in names:
            getattr(theirs, name).copy_(getattr(ours, name))
    x = torch.randn(256, d_in, generator=torch.Generator().manual_seed(1))
    ref = ours.reference_loss(x, float(d_in))
    ref.loss.backward()
    out = theirs.training_forward_pass(
        TrainStepInput(
            sae_in=x,
            coefficients={"l0": coef},
            dead_neuron_mask=None,
            n_training_steps=0,
            is_logging_step=False,
        )
    )
    out.loss.backward()
    torch.testing.assert_close(ref.loss * d_in, out.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref.l1 * d_in, out.losses["l0_loss"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ref.latents, out.feature_acts, atol=1e-6, rtol=1e-6)
    for name in names:
        torch.testing.assert_close(
            getattr(ours, name).grad * d_in, getattr(theirs, name).grad, atol=1e-5, rtol=1e-4, msg=name
        )
    g = ours.threshold.grad
    assert int((g != 0).sum()) >= 5  # the estimator reached thresholds (pre-activations in the window)
    assert float(ref.aux) == 0.0  # no AuxK


def test_stack_fast_path_matches_reference_and_steps():
    saes = [_jumprelu(16, 40, seed=i, l0_coefficient=c) for i, c in enumerate([1e-3, 1e-2, 5e-2])]
    stack = SAEStack.from_saes(saes)
    assert [n for n, _ in stack.named_parameters()][-1] == "threshold"  # trained, with Adam moments
    x = torch.randn(48, 16, generator=torch.Generator().manual_seed(2))
    scale = 2.0  # data unit 1/sqrt(8): the bandwidth scales with it
    out = stack.losses(x, scale)
    out.loss.backward()
    for m, s in enumerate(saes):
        ref = s.reference_loss(x, scale)
        ref.loss.backward()
        torch.testing.assert_close(out.mse[m], ref.mse.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.l1[m], ref.l1.detach(), atol=1e-5, rtol=1e-5)
        assert float(out.l1[m]) > 0 and float(out.aux[m]) == 0.0
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "threshold"):
            g_fast = getattr(stack, name).grad
            g_fast = g_fast[:, m] if name == "W_enc" else g_fast[m]
            torch.testing.assert_close(g_fast, getattr(s, name).grad, atol=1e-5, rtol=1e-4, msg=f"{name} {m}")
    assert bool((stack.threshold.grad != 0).any())
    ev = stack.evaluate(x)
    for m, s in enumerate(saes):
        torch.testing.assert_close(ev.recon[:, m], s(x).recon.detach(), atol=1e-5, rtol=1e-5)
        assert torch.equal(ev.active[:, m], s.encode(x) > 0)
    # a step moves the thresholds (Adam), keeps the decoder unit-norm; to_saes carries them back
    before = stack.threshold.detach().clone()
    stack.train_step(x, scale, lr=1e-2)
    assert not torch.equal(before, stack.threshold.detach()) and float(stack.adam_step) == 1.0
    torch.testing.assert_close(stack.W_dec.norm(dim=-1), torch.ones(3, 40))
    sub = stack.select([0, 2])
    torch.testing.assert_close(sub.adam_m_threshold, stack.adam_m_threshold[[0, 2]])
    back = sub.to_saes()
    torch.testing.assert_close(back[1].threshold.detach(), stack.threshold[2].detach())


def test_saelens_loads_our_checkpoint(tmp_path):
    from sae_lens import SAE as SaeLensSAE

    sae = _jumprelu()
    d = save_sae(sae, tmp_path / "jr")
    cfg = json.loads((d / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["voxsae"]["architecture"] == "jumprelu"
    assert cfg["voxsae"]["config"]["l0_coefficient"] == sae.cfg.options["l0_coefficient"]
    theirs = SaeLensSAE.load_from_disk(d)
    assert type(theirs).__name__ == "JumpReLUSAE"
    torch.testing.assert_close(theirs.threshold.detach(), sae.threshold.detach())
    x = 2 * torch.randn(64, 12)
    with torch.no_grad():
        z = sae.encode(x)
        assert 0 < int((z > 0).sum()) < z.numel() and bool(
            ((z > 0) == (sae.pre_acts(x) > sae.threshold)).all()
        )
        torch.testing.assert_close(theirs.encode(x), z, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(theirs.decode(z), sae.decode(z), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(theirs(x), sae(x).recon, atol=1e-5, rtol=1e-5)
    back = load_sae(d)
    assert back.cfg == sae.cfg
    torch.testing.assert_close(back.threshold.detach(), sae.threshold.detach())


def test_train_command_on_synthetic_ground_truth(tmp_path, capsys):
    """`python -m core train --arch jumprelu`: 3 of 24 true directions active per sample, 32 latents.
    Measured (this code, seed 0): L0 3.0, NMSE 0.063, recovery 0.96, dead 28 %."""
    from sae_lens import SAE as SaeLensSAE

    x, dirs = synthetic_embeddings(n=3000, n_feat=24)
    ws = Workspace.create(tmp_path / "jr", segments_for(3000), x, embedder="synthetic", sample_rate=0)
    args = ["train", "--workspace", str(ws.root), "--arch", "jumprelu", "--latents", "32"]
    args += ["--epochs", "20", "--lr", "0.01", "--l0-coefficient", "0.03", "--device", "cpu"]
    assert cli.main(args) == 0
    assert "jumprelu-L32" in capsys.readouterr().out
    [info] = list_models(ws)
    assert info.name == "jumprelu-L32" and info.arch == "jumprelu" and info.k is None
    met = info.metrics
    assert 2.0 < met["l0"] < 8.0, met["l0"]  # near the 3 true directions, far below d_sae = 32
    assert met["nmse"] < 0.1, met["nmse"]
    sae = open_model(ws, info.name)
    assert sae.cfg.options["l0_coefficient"] == 0.03
    assert recovery(sae.W_dec.detach().numpy(), dirs) >= 0.9
    theirs = SaeLensSAE.load_from_disk(info.path)
    xr = torch.randn(100, 16) * 0.5 + torch.from_numpy(x[:100])
    with torch.no_grad():
        z = sae.encode(xr)
        assert int((z > 0).sum()) > 0
        torch.testing.assert_close(theirs.encode(xr), z, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(theirs.decode(z), sae.decode(z), atol=1e-5, rtol=1e-5)
    # an option no architecture of the grid has: one line, exit 2
    assert cli.main([*args[:4], "topk", "--latents", "8", "--k", "2", "--l0-coefficient", "0.1"]) == 2
    assert "belong to no architecture of the grid" in capsys.readouterr().err


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    cfg = TrainConfig(archs=("jumprelu", "topk"), latents=(16, 24), ks=(3,), epochs=3, lr=3e-3)
    x, _ = synthetic_embeddings(n=800)
    ws_a = Workspace.create(tmp_path / "a", segments_for(800), x, embedder="synthetic", sample_rate=0)
    ws_b = Workspace.create(tmp_path / "b", segments_for(800), x, embedder="synthetic", sample_rate=0)
    train_grid(ws_a, cfg, progress=False)
    with pytest.raises(TrainingInterrupted):
        train_grid(ws_b, cfg, progress=False, stop_after_steps=40)  # mid epoch 2 (32 steps/epoch)
    res = train_grid(ws_b, cfg, progress=False)
    assert sorted(res.trained) == ["jumprelu-L16", "jumprelu-L24", "topk-L16-K3", "topk-L24-K3"]
    for name in res.trained:
        a, b = open_model(ws_a, name).state_dict(), open_model(ws_b, name).state_dict()
        assert a.keys() == b.keys()
        for t in a:
            assert torch.equal(a[t], b[t]), (name, t)  # bit for bit
