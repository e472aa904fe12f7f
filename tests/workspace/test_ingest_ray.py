"""core.workspace.ray_ingest: `ingest --ray` on a local Ray gives the local path's workspace byte for
byte, resumes a killed run from its per-file cache entries, and says a Ray failure in one line."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from core.constants import CACHE_DIR
from core.democorpus.synthetic_voice import speaker_from_index, utterance
from core.errors import InputError, VoxSAEError
from core.workspace import ingest as ingest_module
from core.workspace import ray_ingest
from core.workspace.ingest import INGEST_CACHE, ingest

SR = 16000


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray (2 CPUs) for the module: ingest uses a session it finds and leaves it running."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Four voiced files (one of two segments, one in a sub-folder), a corrupt and a silent one,
    a metadata CSV; and the local path's workspace of them (the reference)."""
    base = tmp_path_factory.mktemp("ray_ingest")
    root = base / "calls"
    (root / "sub").mkdir(parents=True)
    gap = np.zeros(SR // 2, np.float32)
    for i, (name, seconds) in enumerate(
        [("a.wav", 10.0), ("b.wav", 5.0), ("sub/c.wav", 6.0), ("d.wav", 4.5)]
    ):
        sf.write(
            root / name, np.concatenate([gap, utterance(speaker_from_index(i), seconds, seed=i), gap]), SR
        )
    (root / "corrupt.wav").write_bytes(b"RIFF....WAVEfmt garbage" * 4)
    sf.write(root / "silent.wav", np.zeros(5 * SR, np.float32), SR)
    meta = base / "meta.csv"
    meta.write_text("file,speaker\na.wav,A\nb.wav,B\nsub/c.wav,C\n")
    local = ingest(root, base / "local", metadata=meta, jobs=1, progress=False, device="cpu")
    return root, meta, local


def _same_workspace(got, want) -> None:
    a, b = got.workspace, want.workspace
    pd.testing.assert_frame_equal(a.segments, b.segments, check_exact=True)
    # equal up to float rounding: Ray Data batches segments in another composition than the local
    # path, and a batched matmul rounds by its batch's shape (the last bit or two of a float32)
    np.testing.assert_allclose(np.asarray(a.embeddings), np.asarray(b.embeddings), rtol=0, atol=1e-6)
    wa, wb = a.windows, b.windows
    assert len(wa.embeddings) > len(a.segments)  # several windows per segment
    np.testing.assert_allclose(np.asarray(wa.embeddings), np.asarray(wb.embeddings), rtol=0, atol=1e-6)
    assert np.array_equal(wa.segment_rows, wb.segment_rows)
    assert a.fingerprint == a.info.fingerprint and b.fingerprint == b.info.fingerprint
    assert a.info.provenance["skipped"] == b.info.provenance["skipped"]
    # the same summary: files, segments, hours, the skipped files and why (line 2 counts the cache)
    said, told = got.describe().replace(str(a.root), "W"), want.describe().replace(str(b.root), "W")
    assert said.splitlines()[0] == told.splitlines()[0] and said.splitlines()[2:] == told.splitlines()[2:]


def test_ray_ingest_is_identical_to_the_local_path_and_resumes_a_killed_run(
    ray_local, folder, tmp_path, monkeypatch
):
    """One Ray run killed after two files' cache entries, then resumed: the workspace equals the
    local path's (segments.parquet, embeddings, windows, fingerprint, summary) and so do the
    cache entries (the same keys: either path resumes the other's run)."""
    root, meta, local = folder
    assert local.segments == 5 and len(local.skipped) == 2  # a.wav gives two segments
    saved = []
    real_save = ingest_module._save_cache

    def save_then_die(path, res):  # the driver is killed after writing two files' entries
        if len(saved) == 2:
            raise KeyboardInterrupt
        real_save(path, res)
        saved.append(path)

    monkeypatch.setattr(ingest_module, "_save_cache", save_then_die)
    ws = tmp_path / "ray"
    with pytest.raises(KeyboardInterrupt):
        ingest(root, ws, metadata=meta, jobs=1, progress=False, device="cpu", ray="local")
    cache = ws / CACHE_DIR / INGEST_CACHE
    assert sorted(cache.glob("*.npz")) == sorted(saved) and len(saved) == 2
    assert not list(cache.glob(".*.tmp")) and not (ws / "segments.parquet").exists()
    monkeypatch.setattr(ingest_module, "_save_cache", real_save)
    again = ingest(root, ws, metadata=meta, jobs=1, progress=False, device="cpu", ray="local")
    assert again.cached == 2 and again.computed == 4
    _same_workspace(again, local)
    assert {s["file"] for s in again.skipped} == {"corrupt.wav", "silent.wav"}
    keys = {p.name for p in cache.glob("*.npz")}
    assert len(keys) == 6 and keys == {
        p.name for p in (local.workspace.root / CACHE_DIR / INGEST_CACHE).glob("*.npz")
    }


class _FailingEmbedder(ray_ingest.SegmentEmbedder):
    """An actor whose embedding raises, as a broken model or a bug on a worker would."""

    def __init__(self, *args):  # no model to load: it fails before using one
        pass

    def __call__(self, batch):
        raise RuntimeError("the embedder broke on the worker")


def test_a_failure_on_a_ray_worker_is_one_error_and_writes_no_workspace(
    ray_local, folder, tmp_path, monkeypatch
):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the worker cannot import tests/
    monkeypatch.setattr(ray_ingest, "SegmentEmbedder", _FailingEmbedder)
    root, meta, _ = folder
    with pytest.raises(VoxSAEError) as err:
        ingest(root, tmp_path / "ray", metadata=meta, jobs=1, progress=False, device="cpu", ray="local")
    line = str(err.value)
    assert line.startswith("ingest on Ray failed:") and "the embedder broke on the worker" in line
    assert "\n" not in line and "Traceback" not in line
    assert not (tmp_path / "ray" / "segments.parquet").exists()


def test_more_actors_than_the_cluster_has_cpus_is_refused(ray_local, folder, tmp_path):
    root, _, _ = folder
    with pytest.raises(InputError, match=r"--jobs 2: the Ray cluster has 2 CPU\(s\).*at most --jobs 1"):
        ingest(root, tmp_path / "ray", jobs=2, progress=False, device="cpu", ray="local")
    assert not (tmp_path / "ray" / "segments.parquet").exists()
