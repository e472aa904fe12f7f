"""What keeps a bad number from becoming a bad model: TrainConfig refuses non-finite and
out-of-range settings when made; a model whose loss or weights turn non-finite stops alone
(its stack-mates train on), is never saved nor checkpointed, and a resumed or repeated run never
continues from NaN; the memory estimate is close to what training really takes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sae_synth import segments_for, synthetic_embeddings
from safetensors import safe_open

from core.errors import InputError
from core.sae import ARCHITECTURES, SAE, SAEConfig
from core.sae.base import Option
from core.sae.catalog import list_models, open_model
from core.training import memory
from core.training import state as state_file
from core.training.config import TrainConfig
from core.training.grid import train_grid
from core.training.trainer import NamedStack, RunState, TrainingInterrupted
from core.workspace.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("lr", float("nan"), "--lr nan: must be a finite number > 0"),
        ("lr", 0.0, "--lr 0.0: must be a finite number > 0"),
        ("l1_coefficient", float("inf"), "--l1 inf: must be a finite number >= 0"),
        ("auxk_coefficient", -1.0, "auxk_coefficient -1.0: must be a finite number >= 0"),
        ("tol", float("nan"), "tol nan: must be a finite number >= 0"),
        ("patience", 0, "patience 0: must be an integer >= 1"),
        ("epochs", 0, "--epochs 0: must be an integer >= 1"),
        ("max_epochs", 0, "--max-epochs 0: must be an integer >= 1"),
        ("batch_size", 2.5, "--batch-size 2.5: must be an integer >= 1"),
        ("seed", -1, "--seed -1: must be an integer from 0 to 9223372036854775807"),
        ("val_fraction", 0.0, "val_fraction 0.0: must be a number between 0 and 1"),
        ("val_fraction", float("nan"), "val_fraction nan: must be a number between 0 and 1"),
        ("sae_options", {"bandwidth": 0.0}, "--bandwidth 0.0: must be a finite number > 0"),
        (
            "sae_options",
            {"l0_coefficient": float("nan")},
            "--l0-coefficient nan: must be a finite number >= 0",
        ),
    ],
)
def test_a_train_config_refuses_non_finite_and_out_of_range_settings(field, value, message):
    with pytest.raises(InputError) as err:
        TrainConfig(**{field: value})
    assert str(err.value).startswith(message)


def test_checkpoint_interval_is_checked_before_any_data_is_read(tmp_path):
    x, _ = synthetic_embeddings(n=200)
    ws = Workspace.create(tmp_path / "w", segments_for(200), x, embedder="synthetic", sample_rate=0)
    with pytest.raises(InputError, match=r"--checkpoint-every nan: must be a finite number of seconds >= 0"):
        train_grid(
            ws, TrainConfig(latents=(8,), ks=(2,), epochs=1), progress=False, checkpoint_every_s=math.nan
        )


class _Exploding(SAE):
    """A ReLU SAE with a K in its name whose K=3 models turn NaN from step `blow_up_at` on (their
    latents times inf), while the K=2 models of the same stack stay finite."""

    architecture = "exploding"
    saelens_architecture = "standard"
    unit_norm_decoder = True
    uses_auxk = False
    options = {"blow_up_at": Option(15.0, "exploding: the Adam step from which K=3 models are NaN", 0.0)}

    def activate(self, pre):
        return pre.relu()

    @classmethod
    def stack_activate(cls, stack, pre, *, training, scale=1.0):
        z = pre.relu()
        if training and float(stack.adam_step) >= stack.cfgs[0].options["blow_up_at"]:
            boom = torch.tensor([math.inf if c.k == 3 else 1.0 for c in stack.cfgs])
            z = z * boom[None, :, None]
        return z


@pytest.fixture
def exploding(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "exploding", _Exploding)


def _ws(tmp_path, name):
    x, _ = synthetic_embeddings(n=400)  # 360 training rows: 12 steps of 32 per epoch
    return Workspace.create(tmp_path / name, segments_for(400), x, embedder="synthetic", sample_rate=0)


GRID = TrainConfig(archs=("exploding", "topk"), latents=(8,), ks=(2, 3), epochs=3, lr=3e-3)
"""exploding-L8-K2 and -K3 in one stack (K3 turns NaN at step 16: epoch 2, step 4), topk beside."""


def test_a_diverging_model_stops_alone_and_its_stack_mate_trains_on(tmp_path, exploding):
    ws = _ws(tmp_path, "a")
    with pytest.raises(InputError) as err:
        train_grid(ws, GRID, progress=False)
    msg = str(err.value)
    assert msg.startswith(
        "1 model(s) diverged and were not saved (what models/ held is kept): exploding-L8-K3: "
        "training loss became non-finite (nan) at epoch 2, step 4. Try a smaller --lr (this run: 0.003)"
    ), msg
    assert msg.endswith("3 other model(s) trained and saved: exploding-L8-K2, topk-L8-K2, topk-L8-K3"), msg
    assert [m.name for m in list_models(ws)] == ["exploding-L8-K2", "topk-L8-K2", "topk-L8-K3"]
    assert not list((ws.cache_dir / "training").glob("*")), "a finished run leaves no state"
    for m in list_models(ws):
        assert m.metrics["epochs"] == 3 and 0 < m.metrics["nmse"] < 1
    # the K=2 model left alone in its stack trains exactly as in a grid without its diverging mate
    alone = _ws(tmp_path, "alone")
    train_grid(
        alone, TrainConfig(archs=("exploding",), latents=(8,), ks=(2,), epochs=3, lr=3e-3), progress=False
    )
    a, b = open_model(ws, "exploding-L8-K2").state_dict(), open_model(alone, "exploding-L8-K2").state_dict()
    for t in a:
        torch.testing.assert_close(a[t], b[t], atol=1e-6, rtol=1e-5)


def test_a_checkpoint_never_holds_the_diverged_model_and_a_resume_never_continues_it(tmp_path, exploding):
    ws = _ws(tmp_path, "w")
    with pytest.raises(TrainingInterrupted):
        train_grid(ws, GRID, progress=False, stop_after_steps=20)  # killed 4 steps after K3 went NaN
    (path,) = (ws.cache_dir / "training").glob("*")
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["voxsae_state"])
        assert all(bool(torch.isfinite(fh.get_tensor(k)).all()) for k in fh.keys())  # noqa: SIM118
    assert sorted(map(sorted, meta["stacks"])) == [["exploding-L8-K2"], ["topk-L8-K2", "topk-L8-K3"]]
    assert meta["failed"] == {"exploding-L8-K3": "training loss became non-finite (nan) at epoch 2, step 4"}
    # the same command resumes the rest, still reports the failure, and leaves no state behind
    with pytest.raises(
        InputError, match=r"exploding-L8-K3: training loss became non-finite \(nan\) at epoch 2, step 4"
    ):
        train_grid(ws, GRID, progress=False)
    assert not path.exists()
    assert [m.name for m in list_models(ws)] == ["exploding-L8-K2", "topk-L8-K2", "topk-L8-K3"]
    # a third run trains the failed model afresh (the others are cached) and meets the same wall
    with pytest.raises(
        InputError, match=r"^1 model\(s\) diverged.*exploding-L8-K3: .* at epoch 2, step 4\. Try"
    ):
        train_grid(ws, GRID, progress=False)


def test_weights_that_turn_non_finite_under_a_finite_loss_are_caught_at_the_epoch_end(tmp_path):
    """A bandwidth of 1e-300 is 0 in float32: jumprelu's threshold gradient is inf * 0 = NaN, the
    NaN threshold gates every latent off and the loss stays finite (the MSE of predicting b_dec)."""
    ws = _ws(tmp_path, "w")
    cfg = TrainConfig(archs=("jumprelu",), latents=(8,), epochs=2, sae_options={"bandwidth": 1e-300})
    with pytest.raises(
        InputError, match=r"jumprelu-L8: weights became non-finite \(threshold, adam_m_threshold"
    ):
        train_grid(ws, cfg, progress=False)
    assert list_models(ws) == []


def test_a_training_state_holding_nan_is_not_resumed(tmp_path):
    from core.sae.stack import SAEStack

    cfg = SAEConfig("topk", d_in=4, d_sae=6, k=2)
    stack = SAEStack([cfg])
    path = tmp_path / "state.safetensors"
    state_file.save_state(path, "run", [NamedStack(stack, ["m"])], RunState(epoch=1), {})
    assert state_file.load_state(path, "run", lambda name: cfg, "cpu") is not None
    with torch.no_grad():
        stack.adam_v_W_dec[0, 1, 2] = math.nan
    state_file.save_state(path, "run", [NamedStack(stack, ["m"])], RunState(epoch=1), {})
    assert state_file.load_state(path, "run", lambda name: cfg, "cpu") is None


def test_the_memory_estimate_counts_every_model_and_names_the_biggest():
    cfgs = [SAEConfig("topk", d_in=24, d_sae=d, k=k) for d, k in ((100, 5), (100, 10), (400, 5))]
    cfgs.append(SAEConfig("relu", d_in=24, d_sae=400))
    names = ["topk-L100-K5", "topk-L100-K10", "topk-L400-K5", "relu-L400"]
    need = memory.grid_estimate(cfgs, names, batch=128, n_train=900, n_val=100)
    params = {100: 2 * 24 * 100 + 100 + 24, 400: 2 * 24 * 400 + 400 + 24}
    persistent = sum(3 * 4 * params[c.d_sae] + 8 * c.d_sae for c in cfgs)  # parameter + Adam moments
    recon = 24 * 4 * 4
    transient = [  # per stack: a step (gradients + activations), validation, building / saving
        max(
            2 * 4 * params[100] + 128 * 2 * (100 * 10 + recon),
            100 * 2 * (100 * 10 + recon),
            3 * 4 * params[100],
        ),
        max(4 * params[400] + 128 * (400 * 10 + recon), 100 * (400 * 10 + recon), 2 * 4 * params[400]),
        max(4 * params[400] + 128 * (400 * 16 + recon), 100 * (400 * 10 + recon), 2 * 4 * params[400]),
    ]
    data = 1000 * 24 * 8
    assert need.total == persistent + max(transient) + data
    assert need.biggest == "relu-L400"
    assert need.biggest_bytes == 3 * 4 * params[400] + 8 * 400 + transient[2]


_MEASURE = """
import sys
import psutil, torch
sys.path.insert(0, "tests")
from sae_synth import segments_for, synthetic_embeddings
from core.training import grid, memory
from core.training.config import TrainConfig
from core.workspace.workspace import Workspace

torch.set_num_threads(1)
x, _ = synthetic_embeddings(n=600, d_in=24)
ws = Workspace.create(sys.argv[1], segments_for(600), x, embedder="synthetic", sample_rate=0)
seen = []
memory.check_fits = lambda need, device: seen.append(need.total)
grid.train_grid(ws, TrainConfig(archs=("relu",), latents=(10,), epochs=1), progress=False)  # warm up
rss = psutil.Process().memory_info().rss
grid.train_grid(ws, TrainConfig(archs=("relu",), latents=(100_000,), epochs=1), progress=False)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so it would report the parent's
# (an xdist worker's) peak whenever that is higher
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(seen[-1], hwm * 1024 - rss)
"""


@pytest.mark.slow
def test_the_memory_estimate_is_within_a_quarter_of_the_measured_peak(tmp_path):
    """relu-L100000 on 540 training rows: parameters, Adam state, a step and the validation pass.
    MALLOC_MMAP_THRESHOLD_ fixes glibc's otherwise adaptive threshold, so that every freed tensor
    leaves the process and the peak RSS is the peak of live memory (not of what malloc kept)."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path / "w")],
        cwd=REPO,
        env={
            **os.environ,
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            "MALLOC_MMAP_THRESHOLD_": "65536",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    estimate, measured = map(int, proc.stdout.split())
    assert measured > 100e6  # the run really allocated what is estimated
    assert 0.8 < estimate / measured < 1.25, (estimate, measured)


@pytest.mark.parametrize("arch", ["topk", "batchtopk"])
def test_a_last_batch_of_one_row_keeps_the_auxk_loss_finite(arch):
    """The AuxK loss divides by the residual's variance in the batch, which is 0 for a batch of
    one row (the last partial batch of an epoch can hold one): it gave inf, then inf weights."""
    from core.sae.stack import SAEStack

    torch.manual_seed(0)
    x = torch.randn(64, 8)
    stack = SAEStack([SAEConfig(arch, d_in=8, d_sae=32, k=2, seed=0)])
    stack.since_fired.fill_(10**6)  # every latent dead: the AuxK term is on
    out = stack.train_step(x[:1], scale=float(x.var(0).sum()), lr=1e-3)
    assert torch.isfinite(out.loss).all() and float(out.aux.sum()) == 0.0
    assert all(torch.isfinite(p).all() for p in stack.parameters())
    # nor does a batch of identical rows (their variance is float dust, not 0)
    out = stack.train_step(x[3:4].repeat(16, 1) * 1.37, scale=float(x.var(0).sum()), lr=1e-3)
    assert torch.isfinite(out.loss).all() and float(out.aux.sum()) == 0.0
    assert all(torch.isfinite(p).all() for p in stack.parameters())
    # a batch of several rows still gets its AuxK loss
    out = stack.train_step(x[:16], scale=float(x.var(0).sum()), lr=1e-3)
    assert float(out.aux.sum()) > 0.0
    # and the dense reference agrees: 0 on one row
    sae = ARCHITECTURES[arch](SAEConfig(arch, d_in=8, d_sae=32, k=2, seed=0))
    dead = torch.ones(32, dtype=torch.bool)
    assert float(sae.reference_loss(x[:1], float(x.var(0).sum()), dead=dead).aux.detach()) == 0.0
