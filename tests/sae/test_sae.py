"""SAE architectures: config validation, inference rules, and the stacked fast path (embedding_bag
decoding, one encoder matmul for many K) against the naive dense per-model reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.errors import InputError
from core.sae import ARCHITECTURES, SAEConfig, create_sae, geometric_median
from core.sae.stack import SAEStack


def _perturbed(arch: str, ks, d_in=16, d_sae=40):
    saes = []
    for i, k in enumerate(ks):
        s = create_sae(SAEConfig(arch, d_in=d_in, d_sae=d_sae, k=k, seed=i, l1_coefficient=0.3))
        with torch.no_grad():
            s.b_dec.normal_()
            s.b_enc.normal_(0, 0.1)
            if arch == "relu":
                s.W_dec.mul_(torch.rand(d_sae, 1) + 0.5)  # free decoder norms
        saes.append(s)
    return saes


def _fresh_python(code: str) -> str:
    """What `code` prints, run in a new interpreter at the repository root (nothing imported yet)."""
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_the_catalogue_and_dashboard_modules_load_without_torch():
    # a dashboard server's first page reads the catalogue (a submodule of core.sae): it must not
    # pay torch's import (1.5-1.9 s) through the package's __init__; a model's use still gets it
    code = (
        "import sys; import core.sae.catalog, core.dashboard.browse, core.analysis.store; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "from core.sae import SAEConfig, create_sae; "
        "m = create_sae(SAEConfig('relu', d_in=4, d_sae=8, k=2)); "
        "import core.sae; assert type(m) is core.sae.ARCHITECTURES['relu']; print(type(m).__name__)"
    )
    assert _fresh_python(code) == "ReLUSAE"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        import core.sae

        core.sae.nope  # noqa: B018


def test_threads_that_first_ask_for_the_registry_at_once_get_one_registry():
    # a server's sessions that first load a model at the same moment: each of them makes the lazy
    # ARCHITECTURES, and all of them (and every later lookup) must get the one dict, or an
    # architecture registered in one (monkeypatch.setitem, as the training tests do) is unknown to
    # SAEConfig's check and to create_sae, which read another
    code = (
        "import threading, core.sae; made = core.sae._architectures; meet = threading.Barrier(4, timeout=30)\n"
        "def slow():\n    d = made(); meet.wait(); return d\n"
        "core.sae._architectures = slow; got = []\n"
        "ts = [threading.Thread(target=lambda: got.append(core.sae.ARCHITECTURES)) for _ in range(4)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(len({id(d) for d in got + [core.sae.ARCHITECTURES]}))"
    )
    assert _fresh_python(code) == "1"


def test_registry_and_config_validation():
    assert set(ARCHITECTURES) == {"topk", "relu", "batchtopk", "jumprelu"}
    with pytest.raises(InputError, match="at or above the latent dim"):
        SAEConfig("topk", d_in=8, d_sae=10, k=10)
    with pytest.raises(InputError, match="at or above"):
        SAEConfig("batchtopk", d_in=8, d_sae=10, k=12)
    with pytest.raises(InputError, match="unknown SAE architecture"):
        SAEConfig("gated", d_in=8, d_sae=10, k=2)
    with pytest.raises(InputError, match="K >= 1"):
        SAEConfig("topk", d_in=8, d_sae=10, k=0)
    assert SAEConfig("relu", d_in=8, d_sae=10, k=3).k is None
    assert SAEConfig("topk", d_in=192, d_sae=200, k=20).d_in == 192
    # every shared float setting finite and in range (a NaN coefficient trains a NaN model)
    with pytest.raises(InputError, match=r"relu SAE l1_coefficient=nan: must be a finite number >= 0"):
        SAEConfig("relu", d_in=8, d_sae=10, l1_coefficient=float("nan"))
    with pytest.raises(InputError, match=r"auxk_coefficient=-1\.0: must be a finite number >= 0"):
        SAEConfig("topk", d_in=8, d_sae=10, k=2, auxk_coefficient=-1.0)
    with pytest.raises(InputError, match=r"threshold_momentum=0\.0: must be in \(0, 1\]"):
        SAEConfig("batchtopk", d_in=8, d_sae=10, k=2, threshold_momentum=0.0)
    assert SAEConfig("topk", d_in=8, d_sae=10, k=2, auxk_coefficient=0.0).auxk_coefficient == 0.0


def test_stack_names_each_models_non_finite_tensors():
    stack = SAEStack([SAEConfig("jumprelu", d_in=6, d_sae=8, seed=s) for s in range(3)])
    assert stack.nonfinite_tensors() == [[], [], []]
    with torch.no_grad():
        stack.W_enc[2, 1, 5] = float("nan")  # W_enc's model axis is 1
        stack.threshold[1, 0] = float("inf")
        stack.adam_v_b_dec[2, 3] = float("nan")
    assert stack.nonfinite_tensors() == [[], ["W_enc", "threshold"], ["adam_v_b_dec"]]


def test_init_recipe_and_inference():
    x = torch.randn(64, 16) + 3.0
    sae = create_sae(SAEConfig("topk", d_in=16, d_sae=40, k=5))
    sae.init_weights(geometric_median(x))
    # decoder = encoder transposed, unit-norm rows
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(40))
    cos = torch.nn.functional.cosine_similarity(sae.W_dec, sae.W_enc.T, dim=1)
    torch.testing.assert_close(cos, torch.ones(40))
    # the geometric median of a point cloud minimises summed distances: beats the mean on skewed data
    skew = torch.cat([torch.zeros(90, 2), torch.full((10, 2), 100.0)])
    gm = geometric_median(skew)
    assert gm.norm() < 1.0 < skew.mean(0).norm()
    out = sae(x)
    assert out.latents.shape == (64, 40) and (out.latents >= 0).all()
    assert ((out.latents > 0).sum(1) <= 5).all()
    torch.testing.assert_close(out.recon, sae.decode(sae.encode(x)))
    with pytest.raises(InputError, match=r"\[N, 16\]"):
        sae.encode(torch.randn(3, 15))


def test_batchtopk_threshold_at_inference():
    sae = create_sae(SAEConfig("batchtopk", d_in=8, d_sae=30, k=3))
    x = torch.randn(50, 8)
    pre = sae.pre_acts(x)
    train_z = sae.train_activate(pre)
    assert int((train_z > 0).sum()) <= 3 * 50  # K x batch active over the whole batch
    sae.threshold.fill_(0.2)
    z = sae.encode(x)
    assert ((z == 0) | (pre > 0.2)).all() and torch.equal(z > 0, pre > 0.2)


@pytest.mark.parametrize("arch,ks", [("topk", [3, 5, 8]), ("batchtopk", [2, 6]), ("relu", [None, None])])
def test_stack_fast_path_matches_naive_reference(arch, ks):
    saes = _perturbed(arch, ks)
    stack = SAEStack.from_saes(saes)
    x = torch.randn(48, 16)
    dead = torch.rand(len(ks), 40) < 0.4
    out = stack.losses(x, 2.0, dead=dead)
    out.loss.backward()
    for m, s in enumerate(saes):
        ref = s.reference_loss(x, 2.0, dead=dead[m])
        ref.loss.backward()
        torch.testing.assert_close(out.mse[m], ref.mse.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.aux[m], ref.aux.detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out.l1[m], ref.l1.detach(), atol=1e-5, rtol=1e-5)
        if arch != "relu":
            assert float(ref.aux.detach()) > 0  # AuxK is on by default and active when latents are dead
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            g_ref = getattr(s, name).grad
            g_fast = getattr(stack, name).grad
            g_fast = g_fast[:, m] if name == "W_enc" else g_fast[m]
            torch.testing.assert_close(g_fast, g_ref, atol=1e-5, rtol=1e-4, msg=f"{arch} {name} model {m}")
    # inference path of the stack == each model's forward
    if arch == "batchtopk":  # training set the stack's inference threshold (EMA of min selected)
        assert (stack.threshold > 0).all()
        stack.threshold.fill_(0.0123)  # a value off the data, so float rounding cannot flip a latent
        for s in saes:
            s.threshold.fill_(0.0123)
    ev = stack.evaluate(x)
    for m, s in enumerate(saes):
        torch.testing.assert_close(ev.recon[:, m], s(x).recon.detach(), atol=1e-5, rtol=1e-5)


def test_topk_decoder_geometry_after_step():
    saes = _perturbed("topk", [4, 6])
    stack = SAEStack.from_saes(saes)
    x = torch.randn(64, 16)
    w_before = stack.W_dec.detach().clone()
    stack.train_step(x, 1.0, lr=1e-2)
    torch.testing.assert_close(stack.W_dec.norm(dim=-1), torch.ones(2, 40))
    assert not torch.equal(w_before, stack.W_dec)
    # the projected gradient is orthogonal to each decoder row
    stack.zero_grad()
    stack.losses(x, 1.0).loss.backward()
    g = stack.W_dec.grad
    g_proj = g - (g * stack.W_dec).sum(-1, keepdim=True) * stack.W_dec
    assert (g_proj * stack.W_dec).sum(-1).abs().max() < 1e-5
    # the single-model reference does the same projection
    s = saes[0]
    s.zero_grad()
    s.reference_loss(x, 1.0).loss.backward()
    s.remove_parallel_grads()
    assert (s.W_dec.grad * s.W_dec).sum(-1).abs().max() < 1e-5


def test_stack_select_and_round_trip():
    saes = _perturbed("topk", [3, 5, 8])
    stack = SAEStack.from_saes(saes)
    stack.train_step(torch.randn(32, 16), 1.0, lr=1e-3)
    sub = stack.select([0, 2])
    assert sub.M == 2 and [c.k for c in sub.cfgs] == [3, 8]
    torch.testing.assert_close(sub.W_enc, stack.W_enc[:, [0, 2]])
    torch.testing.assert_close(sub.adam_m_W_dec, stack.adam_m_W_dec[[0, 2]])
    assert float(sub.adam_step) == 1.0
    back = sub.to_saes()
    torch.testing.assert_close(back[1].W_dec, stack.W_dec[2].detach())
    x = torch.randn(10, 16)
    torch.testing.assert_close(back[1](x).recon, stack.evaluate(x).recon[:, 2], atol=1e-5, rtol=1e-5)


def test_auxk_sends_gradient_to_dead_latents():
    x = torch.randn(32, 16)
    grads = {}
    for coef in (1.0 / 32, 0.0):
        sae = create_sae(SAEConfig("topk", d_in=16, d_sae=40, k=2, auxk_coefficient=coef))
        with torch.no_grad():
            sae.b_enc[:30] = 5.0  # live latents always win the main TopK
            sae.b_enc[30:] = 0.5
        dead = torch.zeros(40, dtype=torch.bool)
        dead[30:] = True
        stack = SAEStack.from_saes([sae])
        stack.losses(x, 1.0, dead=dead[None]).loss.backward()
        grads[coef] = stack.W_enc.grad[:, 0, 30:].abs().sum()
    assert grads[1.0 / 32] > 0 and grads[0.0] == 0


def test_train_step_is_adam_with_decoder_projection():
    """One stack step == torch.optim.Adam on the single model with OpenAI's decoder handling."""
    saes = _perturbed("topk", [3, 5])
    stack = SAEStack.from_saes(saes)
    x = torch.randn(40, 16)
    for _ in range(3):
        stack.train_step(x, 2.0, lr=1e-2)
    for s in saes:
        opt = torch.optim.Adam(s.parameters(), lr=1e-2, eps=6.25e-10)
        for _ in range(3):
            opt.zero_grad()
            s.reference_loss(x, 2.0, dead=torch.zeros(40, dtype=torch.bool)).loss.backward()
            s.remove_parallel_grads()
            opt.step()
            s.normalize_decoder()
    for m, s in enumerate(saes):
        torch.testing.assert_close(stack.W_enc[:, m], s.W_enc, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(stack.W_dec[m], s.W_dec, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(stack.b_dec[m], s.b_dec, atol=1e-5, rtol=1e-4)


def test_two_level_topk_is_exact():
    from core.sae.sparse import topk_indices

    for L, k in [(600, 20), (601, 35), (1200, 20), (100, 5), (100, 35), (90, 12)]:
        x = torch.randn(64, L)
        x[:8] = torch.randint(0, 3, (8, L)).float()  # heavy ties
        want = x.topk(k, dim=-1)[0]
        got = x.gather(1, topk_indices(x, k)).sort(dim=-1, descending=True)[0]
        assert torch.equal(got, want), (L, k)
        idx = topk_indices(x, k)
        assert all(len(set(r.tolist())) == k for r in idx)  # k distinct latents per row


def test_compiled_segmented_topk_matches_torch_topk():
    from core.sae import cpu_topk

    if not cpu_topk.available():
        pytest.skip("numba not installed")
    g = torch.Generator().manual_seed(0)
    for d_sae, ks in [
        (600, [5, 10, 15, 20, 25, 30, 35]),
        (100, [5, 35]),
        (601, [20]),
        (90, [12, 1]),
        (40, [40]),
    ]:
        pre = torch.randn(96, d_sae * len(ks), generator=g)
        pre[:10] = torch.randint(0, 3, (10, pre.shape[1]), generator=g).float()  # heavy ties
        pre[10, :d_sae] = float("-inf")  # a whole segment of -inf still yields K picks
        # rows far above and below their neighbours: the last row's threshold (step 0) leaves
        # too many or too few candidates there, and the exact path must take over
        pre[20:30] *= 100
        pre[30:40] -= 50
        pre[40:50:2] += 50
        pre[50, ::7] = float("inf")  # +inf entries: the threshold search cannot step past them
        pre[51] = 7.0  # every entry equal: no threshold splits them
        pre[52:60] = pre[52:60] * 1e-30  # tiny values: steps far below the last rows' spacing
        idx = cpu_topk.segmented_topk(pre, d_sae, ks)
        assert idx.shape == (96, sum(ks))
        col = 0
        for m, k in enumerate(ks):
            seg = pre[:, m * d_sae : (m + 1) * d_sae]
            picked = idx[:, col : col + k]
            assert bool(((picked >= m * d_sae) & (picked < (m + 1) * d_sae)).all()), (d_sae, ks, m)
            assert all(len(set(r.tolist())) == k for r in picked)  # k distinct latents per row
            got = pre.gather(1, picked).sort(dim=-1, descending=True)[0]
            assert torch.equal(got, seg.topk(k, dim=-1)[0]), (d_sae, ks, m)
            col += k
    with pytest.raises(ValueError, match="columns"):
        cpu_topk.segmented_topk(torch.zeros(4, 100), 60, [5])
    with pytest.raises(ValueError, match="float32"):
        cpu_topk.segmented_topk(torch.zeros(4, 100, dtype=torch.float64), 100, [5])
