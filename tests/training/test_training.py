"""Grid training on synthetic ground truth: recovery, ReLU's dead latents, metrics, cache, resume
(in-process stop hook and a real kill -9 of the CLI, which resumes to byte-identical weights and
metrics), every bad input, and an architecture added by one registry entry alone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from sae_synth import recovery, segments_for, synthetic_embeddings

from core import cli
from core.errors import InputError, NotFoundError
from core.sae import ARCHITECTURES, SAE
from core.sae.activations import latents
from core.sae.base import Option
from core.sae.catalog import list_models, open_model
from core.training.config import TrainConfig
from core.training.grid import model_name, split_train_val, train_grid, training_rows
from core.training.trainer import TrainingInterrupted
from core.workspace.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


def _ws(tmp_path, name="ws", n=3000, split=None, **kw):
    x, dirs = synthetic_embeddings(n=n, **kw)
    ws = Workspace.create(tmp_path / name, segments_for(n, split), x, embedder="synthetic", sample_rate=0)
    return ws, x, dirs


def test_topk_recovers_ground_truth_and_relu_loses_latents(tmp_path):
    ws, x, dirs = _ws(tmp_path, n_feat=24)
    cfg = TrainConfig(
        archs=("topk", "relu"), latents=(16, 32), ks=(3,), epochs=20, lr=1e-2, l1_coefficient=1.0
    )
    res = train_grid(ws, cfg, progress=False)
    assert sorted(res.trained) == ["relu-L16", "relu-L32", "topk-L16-K3", "topk-L32-K3"]
    infos = {m.name: m for m in list_models(ws)}
    assert [m.name for m in list_models(ws)] == ["relu-L16", "relu-L32", "topk-L16-K3", "topk-L32-K3"]
    sae = open_model(ws, "topk-L32-K3")
    assert recovery(sae.W_dec.detach().numpy(), dirs) >= 0.9
    for d_sae in (16, 32):
        relu_dead = infos[f"relu-L{d_sae}"].metrics["dead_fraction"]
        topk_dead = infos[f"topk-L{d_sae}-K3"].metrics["dead_fraction"]
        assert relu_dead > topk_dead, (d_sae, relu_dead, topk_dead)


def test_metrics_cache_and_split(tmp_path):
    n = 1200
    split = ["sae" if i % 3 else "feature" for i in range(n)]
    ws, x, _ = _ws(tmp_path, n=n, split=split)
    rows = training_rows(ws)
    assert len(rows) == sum(s == "sae" for s in split)
    cfg = TrainConfig(archs=("topk", "batchtopk"), latents=(20,), ks=(2, 4), epochs=2, lr=3e-3)
    res = train_grid(ws, cfg, progress=False)
    assert len(res.trained) == 4
    tr, va = split_train_val(len(rows), cfg.val_fraction, cfg.seed)
    xv = torch.from_numpy(x[rows[va]])
    for info in list_models(ws):
        met = json.loads((info.path / "metrics.json").read_text())
        assert set(met) >= {"nmse", "explained_variance", "l0", "dead_fraction", "density"}
        assert len(met["density"]) == 20 and met["epochs"] == 2 and met["n_val"] == len(va)
        sae = open_model(ws, info.name)
        with torch.no_grad():
            out = sae(xv)
        nmse = float(((out.recon - xv) ** 2).sum() / (xv**2).sum())
        assert abs(nmse - met["nmse"]) < 1e-4
        dens = (out.latents > 0).float().mean(0).numpy()
        np.testing.assert_allclose(dens, met["density"], atol=1e-5)
        assert met["dead_fraction"] == pytest.approx(float((dens == 0).mean()))
        assert abs(met["l0"] - float((out.latents > 0).sum(1).float().mean())) < 1e-4
        if info.arch == "topk":
            assert met["l0"] <= info.k + 1e-6
        cfg_json = json.loads((info.path / "cfg.json").read_text())
        assert cfg_json["voxsae"]["fingerprint"] == ws.fingerprint
        assert cfg_json["voxsae"]["training"]["n_train"] == len(tr)
        assert cfg_json["d_in"] == 16 and cfg_json["voxsae"]["embedder"] == "synthetic"
    # nothing changed: nothing trains
    again = train_grid(ws, cfg, progress=False)
    assert again.trained == [] and len(again.cached) == 4
    # a changed setting retrains
    assert (
        len(
            train_grid(
                ws, TrainConfig(archs=("topk",), latents=(20,), ks=(2,), epochs=1), progress=False
            ).trained
        )
        == 1
    )


def _weights(ws):
    return {m.name: open_model(ws, m.name).state_dict() for m in list_models(ws)}


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    cfg = TrainConfig(archs=("topk", "relu"), latents=(16, 24), ks=(3, 5), epochs=3, lr=3e-3)
    ws_a, _, _ = _ws(tmp_path, "a", n=800)
    train_grid(ws_a, cfg, progress=False)
    ws_b, _, _ = _ws(tmp_path, "b", n=800)
    with pytest.raises(TrainingInterrupted):
        train_grid(ws_b, cfg, progress=False, stop_after_steps=40)  # mid epoch 2 (32 steps/epoch)
    assert list_models(ws_b) == [] or all(m.metrics.get("epochs") for m in list_models(ws_b))
    res = train_grid(ws_b, cfg, progress=False)
    assert len(res.trained) == 6 and not res.state_path.exists()
    wa, wb = _weights(ws_a), _weights(ws_b)
    assert wa.keys() == wb.keys()
    for name in wa:
        for t in wa[name]:
            torch.testing.assert_close(wb[name][t], wa[name][t], atol=1e-5, rtol=1e-4)


def test_damaged_training_state_restarts_cleanly(tmp_path):
    cfg = TrainConfig(latents=(16,), ks=(3,), epochs=2, lr=3e-3)
    ws_a, _, _ = _ws(tmp_path, "a", n=400)
    train_grid(ws_a, cfg, progress=False)
    ws_b, _, _ = _ws(tmp_path, "b", n=400)
    with pytest.raises(TrainingInterrupted):
        train_grid(ws_b, cfg, progress=False, stop_after_steps=5)
    state = next((ws_b.cache_dir / "training").glob("*.safetensors"))
    state.write_bytes(state.read_bytes()[:100])  # truncated
    assert train_grid(ws_b, cfg, progress=False).trained == ["topk-L16-K3"]
    wa, wb = _weights(ws_a), _weights(ws_b)
    for t in wa["topk-L16-K3"]:
        torch.testing.assert_close(wb["topk-L16-K3"][t], wa["topk-L16-K3"][t], atol=1e-5, rtol=1e-4)


def test_kill_9_mid_run_then_same_command_continues(tmp_path):
    ws_a, _, _ = _ws(tmp_path, "a", n=1600)
    ws_b, _, _ = _ws(tmp_path, "b", n=1600)
    args = ["--latents", "16,24", "--k", "3", "--epochs", "5", "--lr", "0.003", "--device", "cpu"]
    train_grid(ws_a, TrainConfig(latents=(16, 24), ks=(3,), epochs=5, lr=3e-3), progress=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "core",
        "train",
        "--workspace",
        str(ws_b.root),
        *args,
        "--checkpoint-every",
        "0",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state_dir = ws_b.cache_dir / "training"
    deadline = time.time() + 60
    while time.time() < deadline and not (state_dir.is_dir() and any(state_dir.glob("*.safetensors"))):
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    time.sleep(0.1)
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed, "training finished before it could be killed"
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resuming" in done.stdout
    # the resumed run wrote the uninterrupted run's models byte for byte (same data, seed, one thread)
    names = {"topk-L16-K3", "topk-L24-K3"}
    assert {m.name for m in list_models(ws_a)} == {m.name for m in list_models(ws_b)} == names
    for name in names:
        for file in ("sae_weights.safetensors", "metrics.json"):
            resumed, uninterrupted = ws_b.models_dir / name / file, ws_a.models_dir / name / file
            assert resumed.read_bytes() == uninterrupted.read_bytes(), f"{name}/{file}"


def test_bad_inputs(tmp_path, capsys):
    ws, x, _ = _ws(tmp_path, n=200)
    tiny = TrainConfig(latents=(8,), ks=(2,), epochs=1)
    with pytest.raises(InputError, match="at or above the latent dim"):
        train_grid(ws, TrainConfig(latents=(8,), ks=(8,), epochs=1), progress=False)
    with pytest.raises(InputError, match="unknown architecture"):
        train_grid(ws, TrainConfig(archs=("gated",), latents=(8,), ks=(2,)), progress=False)
    with pytest.raises(InputError, match="grid is empty"):
        train_grid(ws, TrainConfig(latents=(), ks=(2,)), progress=False)
    # NaN rows (written behind the workspace's back)
    bad = x.copy()
    bad[17, 3] = np.nan
    np.save(ws.root / "embeddings.npy", bad)
    ws_nan = Workspace.open(ws.root)
    with pytest.raises(InputError, match=r"NaN or inf \(first: row 17, segment s000017\)"):
        train_grid(ws_nan, tiny, progress=False)
    # no 'sae' rows / too few rows
    ws2, _, _ = _ws(tmp_path, "nosae", n=50, split=["feature"] * 50)
    with pytest.raises(InputError, match="no segments with split 'sae'"):
        train_grid(ws2, tiny, progress=False)
    ws3, _, _ = _ws(tmp_path, "few", n=5)
    with pytest.raises(InputError, match="at least 10 rows"):
        train_grid(ws3, tiny, progress=False)
    # a model whose d_in differs from the workspace dim
    ws4, _, _ = _ws(tmp_path, "d16", n=200)
    train_grid(ws4, tiny, progress=False)
    xo, _ = synthetic_embeddings(n=200, d_in=8)
    ws5 = Workspace.create(tmp_path / "d8", segments_for(200), xo, embedder="other", sample_rate=0)
    import shutil

    shutil.copytree(ws4.models_dir, ws5.models_dir)
    with pytest.raises(InputError, match="16-d inputs but workspace d8 has 8-d"):
        open_model(ws5, model_name("topk", 8, 2))
    with pytest.raises(InputError, match="8-d"):
        latents(ws5, "topk-L8-K2")
    with pytest.raises(NotFoundError, match="available: topk-L8-K2"):
        open_model(ws4, "topk-L9-K2")
    # CLI: one line, exit 2
    assert (
        cli.main(["train", "--workspace", str(ws2.root), "--latents", "8", "--k", "2", "--epochs", "1"]) == 2
    )
    assert "error: workspace nosae: no segments with split 'sae'" in capsys.readouterr().err
    assert (
        cli.main(["train", "--workspace", str(ws4.root), "--latents", "8", "--k", "2", "--epochs", "1"]) == 0
    )
    assert "1 already up to date" in capsys.readouterr().out


class _ShiftedReLU(SAE):
    """A toy architecture, whole in this class: ReLU(pre - shift), `shift` an option, and a
    per-latent `gain` buffer that travels through the stack and the checkpoint."""

    architecture = "shifted"
    saelens_architecture = "standard"
    uses_k = False
    uses_auxk = False
    options = {"shift": Option(0.1, "shifted: subtracted from every pre-activation")}

    def register_extra(self) -> None:
        self.register_buffer("gain", torch.linspace(1.0, 2.0, self.cfg.d_sae))

    def activate(self, pre):
        return (pre - self.cfg.options["shift"]).relu() * self.gain

    @classmethod
    def stack_tensors(cls, cfgs):
        return {"gain": torch.zeros(len(cfgs), cfgs[0].d_sae)}

    @classmethod
    def stack_activate(cls, stack, pre, *, training, scale=1.0):
        shift = torch.tensor([[c.options["shift"]] for c in stack.cfgs])
        return (pre - shift).relu() * stack.gain

    @classmethod
    def extra_tensor_shapes(cls, cfg):
        return {"gain": (cfg.d_sae,)}


def test_an_architecture_is_one_class_and_one_registry_entry(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(ARCHITECTURES, "shifted", _ShiftedReLU)
    ws, x, _ = _ws(tmp_path, n=400)
    args = ["train", "--workspace", str(ws.root), "--arch", "shifted,topk", "--latents", "8"]
    assert cli.main([*args, "--k", "2", "--epochs", "2", "--shift", "0.2"]) == 0
    assert "trained 2 model(s)" in capsys.readouterr().out
    assert [m.name for m in list_models(ws)] == ["shifted-L8", "topk-L8-K2"]
    sae = open_model(ws, "shifted-L8")
    assert isinstance(sae, _ShiftedReLU) and sae.cfg.options == {"shift": 0.2} and sae.cfg.k is None
    torch.testing.assert_close(sae.gain, torch.linspace(1.0, 2.0, 8))  # from the stack, through the file
    met = list_models(ws)[0].metrics  # the stack's inference rule on the validation rows ...
    _, va = split_train_val(len(x), 0.1, 0)
    with torch.no_grad():
        out = sae(torch.from_numpy(x[va]))  # ... is the single model's
    np.testing.assert_allclose((out.latents > 0).float().mean(0).numpy(), met["density"], atol=1e-5)
    assert 0 < met["l0"] < 8
    assert cli.main([*args, "--k", "2", "--epochs", "2", "--shift", "0.2"]) == 0  # cached
    assert "2 already up to date" in capsys.readouterr().out


def test_an_up_to_date_grid_answers_without_reading_the_rows(tmp_path, monkeypatch):
    from core.training import grid

    ws, _, _ = _ws(tmp_path, n=400)
    cfg = TrainConfig(latents=(8,), ks=(2,), epochs=1)
    assert len(train_grid(ws, cfg, progress=False).trained) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the rows were read for a grid that is up to date")

    monkeypatch.setattr(grid, "_in_memory_rows", no_reading)
    monkeypatch.setattr(grid, "_streamed_rows", no_reading)
    again = train_grid(ws, cfg, progress=False)
    assert again.trained == [] and again.cached == ["topk-L8-K2"]
