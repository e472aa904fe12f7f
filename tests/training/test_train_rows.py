"""`train --rows segments|windows|both`: the rows the SAEs see, counted right; the split drawn
over segments (no window of a validation segment trained on); the choice in the train key and in
cfg.json; resume still exact; a workspace without windows refused saying how to get them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sae_synth import synthetic_embeddings, windowed_workspace

from core import cli
from core.errors import InputError
from core.sae.catalog import list_models, open_model
from core.training.config import TrainConfig
from core.training.grid import (
    grid_specs,
    load_training_data,
    split_train_val,
    train_grid,
    training_arrays,
)
from core.training.trainer import TrainingInterrupted
from core.workspace.workspace import Workspace

N = 300
SMALL = dict(latents=(12,), ks=(2,), epochs=2, lr=3e-3)


def _ws(tmp_path, name="w", windows=True):
    """N segments, 2 of 3 in the sae split; segment i has 1 + i % 4 windows (its embedding + noise)."""
    return windowed_workspace(tmp_path / name, synthetic_embeddings(n=N, seed=3)[0], 4, 1, windows)


def test_rows_are_counted_per_kind_and_validation_windows_stay_out(tmp_path):
    ws = _ws(tmp_path)
    rows, data = load_training_data(ws)
    tr, va = split_train_val(len(rows), 0.1, 0)
    per = 1 + rows % 4  # windows of each training segment
    owner = np.asarray(ws.windows.segment_rows)
    seg_tr, seg_va = training_arrays(ws, "segments", rows, data, (tr, va))
    win_tr, win_va = training_arrays(ws, "windows", rows, data, (tr, va))
    both_tr, both_va = training_arrays(ws, "both", rows, data, (tr, va))
    assert len(seg_tr) == len(tr) and len(seg_va) == len(va)
    assert len(win_tr) == per[tr].sum() and len(win_va) == per[va].sum()
    assert len(both_tr) == len(tr) + per[tr].sum() and len(both_va) == len(va) + per[va].sum()
    # the training windows are exactly those of training segments, in workspace order
    expected = np.asarray(ws.windows.embeddings)[np.isin(owner, rows[tr])]
    assert np.array_equal(win_tr, expected)
    assert not np.isin(owner[np.isin(owner, rows[tr])], rows[va]).any()
    assert np.array_equal(both_tr[: len(tr)], data[tr]) and np.array_equal(both_tr[len(tr) :], win_tr)


def test_the_rows_kind_is_in_the_train_key_and_cfg_json(tmp_path):
    ws = _ws(tmp_path)
    keys = {
        kind: grid_specs(ws, TrainConfig(rows=kind, **SMALL))[0].key
        for kind in ("segments", "windows", "both")
    }
    assert len(set(keys.values())) == 3
    assert "rows" not in TrainConfig(**SMALL).key_fields()  # models trained before --rows keep their key
    first = train_grid(ws, TrainConfig(**SMALL), progress=False)
    assert first.trained == ["topk-L12-K2"]
    windows = train_grid(ws, TrainConfig(rows="windows", **SMALL), progress=False)
    assert windows.trained == ["topk-L12-K2"] and windows.cached == []  # not the segments model
    info = json.loads((list_models(ws)[0].path / "cfg.json").read_text())["voxsae"]["training"]
    rows, _ = load_training_data(ws)
    tr, va = split_train_val(len(rows), 0.1, 0)
    assert info["rows"] == "windows" and info["n_train"] == (1 + rows[tr] % 4).sum()
    assert info["n_val"] == (1 + rows[va] % 4).sum()
    from core.dashboard.overview import models_table

    assert models_table(ws)["training_rows"].tolist() == ["windows"]  # what the overview shows
    again = train_grid(ws, TrainConfig(rows="windows", **SMALL), progress=False)
    assert again.trained == [] and again.cached == ["topk-L12-K2"]


def test_resume_on_windows_matches_the_uninterrupted_run(tmp_path):
    cfg = TrainConfig(rows="both", latents=(12,), ks=(2, 3), epochs=2, lr=3e-3, batch_size=32)
    ws_a, ws_b = _ws(tmp_path, "a"), _ws(tmp_path, "b")
    train_grid(ws_a, cfg, progress=False)
    with pytest.raises(TrainingInterrupted):
        train_grid(ws_b, cfg, progress=False, stop_after_steps=7)
    assert len(train_grid(ws_b, cfg, progress=False).trained) == 2
    for m in list_models(ws_a):
        a, b = open_model(ws_a, m.name).state_dict(), open_model(ws_b, m.name).state_dict()
        for t in a:
            torch.testing.assert_close(b[t], a[t], atol=1e-5, rtol=1e-4)


def test_windows_without_windows_and_an_unknown_kind_are_refused(tmp_path, capsys):
    ws = _ws(tmp_path, windows=False)
    for kind in ("windows", "both"):
        with pytest.raises(
            InputError, match=rf"--rows {kind}: workspace w has no window embeddings.*re-ingest"
        ):
            train_grid(ws, TrainConfig(rows=kind, **SMALL), progress=False)
    assert list_models(ws) == []
    with pytest.raises(InputError, match=r"--rows 'frames': must be one of segments, windows, both"):
        TrainConfig(rows="frames")
    rc = cli.main(["train", "--workspace", str(ws.root), "--rows", "frames", "--latents", "8", "--k", "2"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("error:") == 1 and "--rows 'frames'" in err
    win = _ws(tmp_path, "nan")
    bad = np.asarray(win.windows.embeddings).copy()
    bad[4, 0] = np.inf  # written behind the workspace's back: windows 3-5 are segment 2's (sae split)
    np.save(win.root / "windows.npy", bad)
    with pytest.raises(
        InputError,
        match=r"1 window row\(s\) contain NaN or inf \(first: window 4 of .*windows.npy, segment row 2, "
        r"segment s000002\)",
    ):
        train_grid(Workspace.open(win.root), TrainConfig(rows="windows", **SMALL), progress=False)
