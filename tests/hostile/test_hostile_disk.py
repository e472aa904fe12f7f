"""A full disk and a read-only data folder, for the commands that write a workspace's files:
one `error: cannot write <path>: ...` line, nothing half-written, the old files intact."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
from bad_audio import write_voice
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


def _one_call(tmp_path):
    """A folder with one 6 s voice-like file to ingest."""
    return write_voice(tmp_path / "calls" / "a.wav", seed=1).parent


def test_ingest_on_a_full_disk_keeps_the_old_workspace(disk, trained_ws, tmp_path, monkeypatch):
    _workspace_on(disk, trained_ws, monkeypatch)
    calls = _one_call(tmp_path)
    fill_disk(disk)
    before = snapshot(disk)
    out = run_cli("ingest", calls, "--workspace", "w", "--jobs", "1")
    line = assert_refused(out, "cannot write", "No space left on device", before=before, roots=[disk])
    assert f"{disk}/w/" in line
    assert not [p for p in disk.rglob("*") if p.is_file() and str(p) not in before]  # nothing half-written


def test_ingest_into_a_read_only_folder_fails_before_decoding(disk, trained_ws, tmp_path, monkeypatch):
    import core.workspace.ingest as ingest_mod

    _workspace_on(disk, trained_ws, monkeypatch)
    calls = _one_call(tmp_path)
    decoded = []
    monkeypatch.setattr(ingest_mod, "load_audio", lambda *a, **kw: decoded.append(a) or 1 / 0)
    before = snapshot(disk)
    with read_only(disk):
        out = run_cli("ingest", calls, "--workspace", "w", "--jobs", "1")
    assert_refused(
        out, f"cannot write {disk}/w/cache/ingest", "Read-only file system", before=before, roots=[disk]
    )
    assert decoded == []


def test_a_new_workspace_in_a_read_only_data_folder(disk, tmp_path, monkeypatch):
    monkeypatch.setenv("VOXSAE_DATA", str(disk))
    calls = _one_call(tmp_path)
    with read_only(disk):
        out = run_cli("ingest", calls, "--workspace", "fresh", "--jobs", "1")
    assert_refused(out, f"cannot write {disk}/fresh/cache/ingest", "Read-only file system")
    assert not (disk / "fresh").exists()
