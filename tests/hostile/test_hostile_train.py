"""`train` as a hostile user runs it: every flag non-finite, out of range or not a number, a grid
too big for the machine's memory, a loss that turns non-finite mid-training, embeddings near the
float32 limit, a full disk and a read-only models folder. Each is refused with one `error:` line
naming the input and what is wrong, and the good models already trained stay byte-identical.

`trained_ws` holds topk-L8-K2 and topk-L16-K2 trained with `--epochs 2` and the other defaults,
so `train --workspace w --latents 8 --k 2 --epochs 2` retrains nothing: a case that changes one
setting shows that a refused run never touches the existing model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from hostile_harness import assert_refused, assert_same_files, fill_disk, read_only, run_cli, snapshot

TINY = ("--latents", "8", "--k", "2", "--epochs", "2")
"""The grid of the trained workspace's topk-L8-K2 (cached: trains nothing unless a setting changes)."""


def _train(*flags: str):
    return run_cli("train", "--workspace", "w", *flags)


def _refused(trained_ws, flags, *needles: str) -> str:
    """Run train with `flags`: refused with one error line holding every needle, and nothing
    under the workspace written, changed or left behind. Returns the line."""
    before = snapshot(trained_ws)
    out = _train(*flags)
    return assert_refused(out, *needles, before=before, roots=[trained_ws], allow_new=False)


def test_the_tiny_grid_is_cached_so_a_changed_setting_is_what_trains(trained_ws):
    before = snapshot(trained_ws)
    out = _train(*TINY)
    assert out.rc == 0, out
    assert "trained 0 model(s), 1 already up to date" in out.out
    out = _train("--arch", "topk,topk", "--latents", "8,8", "--k", "2,2", "--epochs", "2")  # one model
    assert "trained 0 model(s), 1 already up to date" in out.out, out
    assert snapshot(trained_ws) == before


# -- hyper-parameters refused up front ------------------------------------------------------------
@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--lr", "nan", "finite number > 0"),
        ("--lr", "inf", "finite number > 0"),
        ("--lr", "-inf", "finite number > 0"),
        ("--lr", "-1", "finite number > 0"),
        ("--lr", "0", "finite number > 0"),
        ("--l1", "nan", "finite number >= 0"),
        ("--l1", "-0.5", "finite number >= 0"),
        ("--seed", "-1", "integer from 0 to"),
        ("--seed", str(2**64), "integer from 0 to"),
        ("--epochs", "0", "integer >= 1"),
        ("--epochs", "-3", "integer >= 1"),
        ("--max-epochs", "0", "integer >= 1"),
        ("--batch-size", "0", "integer >= 1"),
        ("--threads", "0", "integer from 1 to"),
        ("--threads", "100000", "(the CPUs of this machine)"),  # torch segfaulted in the first matmul
        ("--checkpoint-every", "nan", "finite number of seconds >= 0"),
        ("--checkpoint-every", "-5", "finite number of seconds >= 0"),
    ],
)
def test_a_hyper_parameter_out_of_range_is_refused_naming_flag_and_value(trained_ws, flag, value, why):
    # FLAG=VALUE: argparse takes "-inf" for an option name otherwise
    _refused(trained_ws, (*TINY, f"{flag}={value}"), f"{flag} {value}", why)


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--l0-coefficient", "inf", "finite number >= 0"),
        ("--l0-coefficient", "-1", "finite number >= 0"),
        ("--bandwidth", "0", "finite number > 0"),
        ("--bandwidth", "nan", "finite number > 0"),
        ("--init-threshold", "-inf", "finite number >= 0"),
    ],
)
def test_an_architecture_option_out_of_range_is_refused_naming_it(trained_ws, flag, value, why):
    _refused(trained_ws, ("--arch", "jumprelu", *TINY, f"{flag}={value}"), f"{flag} {value}", why)


@pytest.mark.parametrize(
    ("flag", "value", "why"),
    [
        ("--lr", "fast", "not a number"),
        ("--seed", "1.5", "not an integer"),
        ("--epochs", "two", "not an integer"),
        ("--batch-size", "1e3", "not an integer"),
        ("--l1", "", "not a number"),
        ("--k", "0", "expected comma-separated positive integers"),
        ("--k", "2,-4", "expected comma-separated positive integers"),
        ("--latents", "8,x", "expected comma-separated positive integers"),
        ("--latents", ",", "expected comma-separated positive integers"),
    ],
)
def test_a_flag_that_is_not_a_number_or_list_is_one_error_line(trained_ws, flag, value, why):
    # argparse's own refusal would be a usage block ending in "python -m core train: error: ..."
    _refused(trained_ws, (*TINY, flag, value), f"{flag} {value!r}", why)


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (("--latents", "8,16", "--k", "9", "--epochs", "2"), ("topk-L8-K9", "K=9", "latent dim 8")),
        ((*TINY, "--arch", "gated"), ("unknown architecture 'gated'",)),
        ((*TINY, "--device", "tpu0"), ("unknown device 'tpu0'",)),
    ],
)
def test_a_grid_that_cannot_be_built(trained_ws, flags, needles):
    _refused(trained_ws, flags, *needles)


def test_an_unknown_workspace(data_root):
    out = run_cli("train", "--workspace", "nowhere", *TINY)
    assert_refused(out, "nowhere")


# -- memory: estimated before anything is allocated ---------------------------------------------
def test_latents_10_million_is_refused_with_the_memory_it_would_need(trained_ws, monkeypatch):
    monkeypatch.setattr("core.training.memory.available_bytes", lambda device: 16 * 10**9)
    line = _refused(
        trained_ws,
        ("--latents", "10000000", "--epochs", "2"),
        "needs about",
        "GB of memory",
        "16.0 GB is available",
        "the biggest model, topk-L10000000-K5,",
        "--latents",
    )
    need = float(line.split("needs about ")[1].split(" GB")[0])
    # 7 models (K 5..35) x 10M latents x 2 x 24 weights: parameters, gradients and Adam alone 54 GB
    assert 54 < need < 200, line


def test_a_grid_beyond_any_machine_is_refused_with_the_real_available_memory(trained_ws):
    flags = ("--latents", "1000000000", "--k", "5", "--epochs", "1")
    _refused(
        trained_ws, flags, "needs about", "GB of memory", "topk-L1000000000-K5", "GB is available on cpu"
    )


# -- a loss that turns non-finite: that model stops, nothing NaN is ever saved -------------------
def test_lr_1e30_diverges_and_the_good_model_stays_byte_identical(trained_ws):
    before = snapshot(trained_ws)
    out = _train(*TINY, "--lr", "1e30")
    line = assert_refused(
        out,
        "topk-L8-K2",
        "non-finite",
        "epoch 1, step 2",
        "smaller --lr (this run: 1e+30)",
        before=before,
        roots=[trained_ws],
    )
    assert "not saved" in line
    # the failed run leaves no training state to resume into NaN: a rerun starts afresh, fails the same way
    assert not list((trained_ws / "cache" / "training").glob("*"))
    again = _train(*TINY, "--lr", "1e30")
    assert again.error_lines == [line]
    assert "resuming" not in again.out
    assert_same_files(before, [trained_ws])


def test_one_diverging_architecture_stops_alone_and_the_rest_of_the_grid_is_saved(trained_ws):
    before = snapshot(trained_ws)
    # a bandwidth below float32's smallest number is 0 in the kernel: jumprelu's threshold gradient is NaN
    out = _train(
        "--arch", "topk,jumprelu", "--latents", "8,12", "--k", "2", "--epochs", "2", "--bandwidth", "1e-300"
    )
    line = assert_refused(
        out,
        "jumprelu-L8",
        "jumprelu-L12",
        "non-finite",
        "not saved",
        "topk-L12-K2",
        before=before,
        roots=[trained_ws],
    )
    assert "1 other model(s) trained and saved" in line
    models = trained_ws / "models"
    assert sorted(p.name for p in models.iterdir()) == ["topk-L12-K2", "topk-L16-K2", "topk-L8-K2"]
    metrics = json.loads((models / "topk-L12-K2" / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0 < metrics["nmse"] < 1


def test_embeddings_near_the_float32_limit_are_refused_before_training(trained_ws):
    from core.workspace.workspace import Workspace

    seg = pd.read_parquet(trained_ws / "segments.parquet")
    emb = np.load(trained_ws / "embeddings.npy")
    huge = (emb / np.abs(emb).max() * 1e38).astype(np.float32)
    assert np.isfinite(huge).all()
    Workspace.create(trained_ws.parent / "huge", seg, huge, embedder="synthetic", sample_rate=16000)
    before = snapshot(trained_ws.parent)
    out = run_cli("train", "--workspace", "huge", *TINY)
    assert_refused(
        out,
        "workspace huge",
        "overflow float32",
        "s00000",
        before=before,
        roots=[trained_ws.parent],
        allow_new=False,
    )


# -- faults: a full disk, a read-only models folder ----------------------------------------------
def _models_on(disk, trained_ws):
    """The workspace's models folder moved onto the small disk (a symlink in its place)."""
    shutil.copytree(trained_ws / "models", disk / "models")
    shutil.rmtree(trained_ws / "models")
    (trained_ws / "models").symlink_to(disk / "models")
    return disk / "models"


def test_train_on_a_full_disk_keeps_every_model(disk, trained_ws, monkeypatch):
    dest = disk / "w"
    shutil.copytree(trained_ws, dest)
    monkeypatch.setenv("VOXSAE_DATA", str(disk))
    fill_disk(disk)
    before = snapshot(disk)
    out = run_cli("train", "--workspace", "w", "--latents", "8", "--k", "4", "--epochs", "2")
    # the first write of a 2-epoch run is the training state after epoch 1
    state = f"cannot write {dest / 'cache' / 'training'}/"
    line = assert_refused(out, state, "No space left on device", before=before, roots=[disk], allow_new=False)
    assert "training_state.safetensors" in line


def test_saving_a_model_on_a_full_disk_names_the_model(disk, trained_ws):
    models = _models_on(disk, trained_ws)
    fill_disk(disk)
    before = snapshot(disk, trained_ws)
    out = _train("--latents", "8", "--k", "4", "--epochs", "1")
    assert_refused(
        out,
        f"cannot write {trained_ws / 'models' / 'topk-L8-K4'}",
        "No space left on device",
        before=before,
        roots=[disk, trained_ws],
        allow_new=False,
    )
    assert sorted(p.name for p in models.iterdir()) == ["topk-L16-K2", "topk-L8-K2"]


def test_train_into_a_read_only_models_folder(disk, trained_ws):
    models = _models_on(disk, trained_ws)
    before = snapshot(disk, trained_ws)
    with read_only(disk):
        out = _train("--latents", "8", "--k", "4", "--epochs", "1")
    assert_refused(
        out,
        f"cannot write {trained_ws / 'models' / 'topk-L8-K4'}",
        "Read-only file system",
        before=before,
        roots=[disk, trained_ws],
        allow_new=False,
    )
    assert sorted(p.name for p in models.iterdir()) == ["topk-L16-K2", "topk-L8-K2"]
    # once the folder is writable again the same command trains and saves the model
    out = _train("--latents", "8", "--k", "4", "--epochs", "1")
    assert out.rc == 0, out
    assert (models / "topk-L8-K4" / "sae_weights.safetensors").is_file()


def test_a_read_only_workspace(disk, trained_ws, monkeypatch):
    dest = disk / "w"
    shutil.copytree(trained_ws, dest)
    monkeypatch.setenv("VOXSAE_DATA", str(disk))
    before = snapshot(disk)
    with read_only(disk):
        out = run_cli("train", "--workspace", "w", "--latents", "8", "--k", "4", "--epochs", "2")
    state = f"cannot write {dest / 'cache' / 'training'}/"
    line = assert_refused(out, state, "Read-only file system", before=before, roots=[disk], allow_new=False)
    assert "training_state.safetensors" in line
