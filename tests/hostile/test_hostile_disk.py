"""A full disk and a read-only data folder, for the commands that write a workspace's files:
one `error: cannot write <path>: ...` line, nothing half-written, the old files intact."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
from hostile_harness import assert_refused, fill_disk, read_only, run_cli, snapshot


def _workspace_on(disk, trained_ws, monkeypatch):
    """The trained workspace moved onto the small disk, VOXSAE_DATA pointing there."""
    dest = disk / "w"
    dest.mkdir()
    for name in ("workspace.json", "segments.parquet", "embeddings.npy"):
        shutil.copy2(trained_ws / name, dest / name)
    monkeypatch.setenv("VOXSAE_DATA", str(disk))
    return dest


def test_import_embeddings_on_a_full_disk_keeps_the_old_workspace(disk, trained_ws, tmp_path, monkeypatch):
    ws = _workspace_on(disk, trained_ws, monkeypatch)
    seg = pd.read_parquet(ws / "segments.parquet")
    seg.to_csv(tmp_path / "meta.csv", index=False)
    emb = np.load(ws / "embeddings.npy")
    np.save(tmp_path / "new.npy", emb[::-1].copy())
    fill_disk(disk)
    before = snapshot(disk)
    out = run_cli(
        "import-embeddings", tmp_path / "new.npy", "--workspace", "w", "--metadata", tmp_path / "meta.csv"
    )
    assert_refused(out, "cannot write", "No space left on device", str(disk), before=before, roots=[disk])


def test_import_embeddings_into_a_read_only_folder(disk, trained_ws, tmp_path, monkeypatch):
    ws = _workspace_on(disk, trained_ws, monkeypatch)
    seg = pd.read_parquet(ws / "segments.parquet")
    seg.to_csv(tmp_path / "meta.csv", index=False)
    np.save(tmp_path / "new.npy", np.load(ws / "embeddings.npy")[::-1].copy())
    before = snapshot(disk)
    with read_only(disk):
        out = run_cli(
            "import-embeddings", tmp_path / "new.npy", "--workspace", "w", "--metadata", tmp_path / "meta.csv"
        )
    assert_refused(out, "cannot write", "Read-only file system", before=before, roots=[disk])
