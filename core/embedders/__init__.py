"""Speaker embedders behind one interface, and batched multi-process embedding.

    get_embedder(name, checkpoint=None, device=None) -> Embedder (.name, .dim, .sample_rate, .embed)
    embed_segments(name, audios, jobs=2, ...) -> float32 [N, dim]
    embed_segments_with_windows(name, audios, WindowConfig(), jobs=2, ...) -> SegmentEmbeddings
                                                (segments [N, dim], windows [W, dim], window_segment [W])
    check_jobs(jobs, command) -> jobs           (InputError for a count no machine here can run)

`resemblyzer` (default, 256-d, weights inside the package) runs on CPU in `jobs` worker
processes of one torch thread each (measured here: 2 processes x 1 thread beat 1 process x 2
threads by far). `titanet` restores a local NeMo .nemo file (192-d). `mfcc-stats` is a classical
speaker representation with no weights (120-d: mean and sd of MFCCs 1-20 and their deltas, numpy
and librosa only; core.embedders.mfcc_stats), so one folder of audio can be ingested by two
embedders and the same segments compared (it always runs on CPU). With CUDA available, the
others run in this process on the GPU.

Window embeddings come from the same pass as the segments' (embed_with_windows): resemblyzer's
are the 1.6 s partial utterances its segment embedding averages; the others embed a sliding
window (WindowConfig, default 1.6 s every 0.8 s) the same way as a segment, in the same batches.

Layer 2 of the data flow. May import: core.constants, core.errors (audio arrives as arrays).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import multiprocessing as mp
import os
from collections.abc import Callable

import numpy as np

from core.constants import DEFAULT_EMBEDDER, SAMPLE_RATE
from core.embedders.base import Embedder, SegmentEmbeddings, WindowConfig, pick_device
from core.errors import InputError


def _resemblyzer(**kw) -> Embedder:
    from core.embedders.resemblyzer_encoder import ResemblyzerEmbedder

    return ResemblyzerEmbedder(**kw)


def _titanet(**kw) -> Embedder:
    from core.embedders.titanet import TitaNetEmbedder

    return TitaNetEmbedder(**kw)


def _mfcc_stats(**kw) -> Embedder:
    from core.embedders.mfcc_stats import MfccStatsEmbedder

    return MfccStatsEmbedder(**kw)


EMBEDDERS: dict[str, Callable[..., Embedder]] = {
    "resemblyzer": _resemblyzer,
    "titanet": _titanet,
    "mfcc-stats": _mfcc_stats,
}
"""name -> factory(checkpoint=, device=). Modules are imported only when used (NeMo is slow)."""

EMBEDDER_DIMS = {"resemblyzer": 256, "titanet": 192, "mfcc-stats": 120}
"""Nominal dims (a custom .nemo may differ; Embedder.dim is authoritative)."""

POOLED = {"resemblyzer", "mfcc-stats"}
"""Embedders that run in `jobs` single-threaded CPU worker processes for long inputs."""
NUMPY_ONLY = {"mfcc-stats"}
"""Embedders without torch: always on CPU, whatever --device says (a GPU has nothing to do)."""

CHUNK = 32  # segments per work item (at most)
JOBS_PER_CPU = 4
"""--jobs allowed per CPU core: more worker processes than that only wait (and --jobs 100000
would start 100,000 of them)."""
MIN_POOL_AUDIO_S = 600.0
"""Less audio than this is embedded in-process (starting workers costs seconds) unless a pool
for the same embedder is already running."""


def get_embedder(
    name: str = DEFAULT_EMBEDDER, *, checkpoint: str | None = None, device: str | None = None
) -> Embedder:
    """The embedder called `name` (cached per name/checkpoint/device in this process, however the
    call spells them: get_embedder("x") and get_embedder("x", device=None) share one model)."""
    return _loaded_embedder(name, checkpoint, device)


@functools.lru_cache(maxsize=4)
def _loaded_embedder(name: str, checkpoint: str | None, device: str | None) -> Embedder:
    if name not in EMBEDDERS:
        raise InputError(f"unknown embedder {name!r} (available: {', '.join(EMBEDDERS)})")
    return EMBEDDERS[name](checkpoint=checkpoint, device=device)


def check_jobs(jobs: int, command: str) -> int:
    """`jobs` (worker processes for `command`) when it is 1 .. JOBS_PER_CPU x the CPU cores here."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if jobs < 1:
        raise InputError(f"{command}: --jobs must be at least 1, got {jobs}")
    if jobs > JOBS_PER_CPU * cpus:
        raise InputError(
            f"{command}: --jobs {jobs} is more worker processes than this machine can run "
            f"(at most {JOBS_PER_CPU * cpus}: {JOBS_PER_CPU} per CPU core, {cpus} here)"
        )
    return jobs


# -- worker processes -------------------------------------------------------------------------
_WORKER: Embedder | None = None


def _init_worker(name: str, checkpoint: str | None) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    if name not in NUMPY_ONLY:  # a worker without torch starts in a fraction of the time
        import torch

        torch.set_num_threads(1)
    global _WORKER
    _WORKER = get_embedder(name, checkpoint=checkpoint, device="cpu")


def _embed_chunk(work: tuple[list[np.ndarray], WindowConfig | None]) -> np.ndarray | SegmentEmbeddings:
    audios, windows = work
    assert _WORKER is not None
    return _embed_with(_WORKER, audios, windows)


def _embed_with(
    embedder: Embedder, audios: list[np.ndarray], windows: WindowConfig | None
) -> np.ndarray | SegmentEmbeddings:
    """embedder.embed(audios), or with their windows when `windows` is set."""
    return embedder.embed(audios) if windows is None else embedder.embed_with_windows(audios, windows)


_POOL: tuple[tuple, mp.pool.Pool] | None = None


def _pool(name: str, checkpoint: str | None, jobs: int):
    """A spawn-started pool kept for reuse (model loading costs seconds; reuse is free)."""
    global _POOL
    key = (name, checkpoint, jobs)
    if _POOL is not None and _POOL[0] == key:
        return _POOL[1]
    shutdown_pool()
    # load once here first: a bad checkpoint must raise here, not kill workers in a respawn loop
    get_embedder(name, checkpoint=checkpoint, device="cpu")
    pool = mp.get_context("spawn").Pool(jobs, initializer=_init_worker, initargs=(name, checkpoint))
    _POOL = (key, pool)
    return pool


def shutdown_pool() -> None:
    """Stop the worker processes (they are otherwise kept for the next call)."""
    global _POOL
    if _POOL is not None:
        _POOL[1].terminate()
        _POOL[1].join()
        _POOL = None


atexit.register(shutdown_pool)


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run with `n` torch intra-op threads (None: leave as is); restores the previous count.

    On a shared CPU, torch's default of one thread per core oversubscribes badly (the LSTM slows
    down several-fold when another process holds a core), so CPU embedding uses `jobs` threads.
    """
    if n is None:  # nothing to set (and no torch to import for an embedder that has none)
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def embed_segments(
    name: str,
    audios: list[np.ndarray],
    *,
    jobs: int = 2,
    batch_size: int = CHUNK,
    progress: bool = True,
    checkpoint: str | None = None,
    device: str | None = None,
    desc: str = "embedding",
    pool: bool | None = None,
) -> np.ndarray:
    """Embed 16 kHz mono segments -> float32 [len(audios), dim], in order (see _embed_all)."""
    return _embed_all(name, audios, None, jobs, batch_size, progress, checkpoint, device, desc, pool).segments


def embed_segments_with_windows(
    name: str,
    audios: list[np.ndarray],
    windows: WindowConfig | None = None,
    *,
    jobs: int = 2,
    batch_size: int = CHUNK,
    progress: bool = True,
    checkpoint: str | None = None,
    device: str | None = None,
    desc: str = "embedding",
    pool: bool | None = None,
) -> SegmentEmbeddings:
    """embed_segments, with each segment's window embeddings from the same pass (worker
    processes carry them back with the segments'): SegmentEmbeddings, window_segment indexing
    `audios`. `windows` (default WindowConfig()) sets the sliding window of the embedders that
    have none of their own."""
    return _embed_all(
        name, audios, windows or WindowConfig(), jobs, batch_size, progress, checkpoint, device, desc, pool
    )


def _embed_all(
    name: str,
    audios: list[np.ndarray],
    windows: WindowConfig | None,
    jobs: int,
    batch_size: int,
    progress: bool,
    checkpoint: str | None,
    device: str | None,
    desc: str,
    pool: bool | None,
) -> SegmentEmbeddings:
    """Embed 16 kHz mono segments -> float32 [len(audios), dim], in order, with a progress bar.

    jobs > 1 on CPU: resemblyzer and mfcc-stats (POOLED) run in `jobs` worker processes of one
    torch thread each (for at least MIN_POOL_AUDIO_S of audio, or when such a pool is already
    running; `pool` True/False forces the choice).
    Otherwise (jobs == 1, little audio, CUDA, titanet) this process, batches of batch_size, on
    CPU with 1 torch thread for resemblyzer and `jobs` threads for titanet; mfcc-stats always
    runs on CPU (NUMPY_ONLY) and never imports torch here.
    """
    from tqdm import tqdm

    if name not in EMBEDDERS:
        raise InputError(f"unknown embedder {name!r} (available: {', '.join(EMBEDDERS)})")
    audios = [np.asarray(a, dtype=np.float32) for a in audios]
    device = "cpu" if name in NUMPY_ONLY else pick_device(device)
    total_s = sum(len(a) for a in audios) / SAMPLE_RATE
    warm = _POOL is not None and _POOL[0] == (name, checkpoint, jobs)
    use_pool = (
        name in POOLED
        and device == "cpu"
        and jobs > 1
        and len(audios) > 1
        and (pool if pool is not None else (warm or total_s >= MIN_POOL_AUDIO_S))
    )
    if use_pool:  # even chunks so both workers finish together
        batch_size = max(1, min(batch_size, math.ceil(len(audios) / (2 * jobs))))
    chunks = [audios[i : i + batch_size] for i in range(0, len(audios), batch_size)]
    bar = tqdm(total=len(audios), desc=desc, unit="seg", disable=not progress, leave=False)
    out: list[np.ndarray | SegmentEmbeddings] = []
    try:
        if use_pool:
            work = [(chunk, windows) for chunk in chunks]
            for emb in _pool(name, checkpoint, jobs).imap(_embed_chunk, work):
                out.append(emb)
                bar.update(len(emb if windows is None else emb.segments))
        else:
            embedder = get_embedder(name, checkpoint=checkpoint, device=device)
            # resemblyzer's LSTM: 1 thread is nearly as fast as 2 and does not collapse when
            # another process holds a core (measured: 1x2 threads ran 3-6x slower under load)
            threads = (1 if name in POOLED else max(1, jobs)) if device == "cpu" else None
            if name in NUMPY_ONLY:  # no torch to set threads for
                threads = None
            with _torch_threads(threads):
                for chunk in chunks:
                    out.append(_embed_with(embedder, chunk, windows))
                    bar.update(len(chunk))
    finally:
        bar.close()
    return _joined(out, lambda: get_embedder(name, checkpoint=checkpoint, device=device).dim)


def _joined(parts: list[np.ndarray | SegmentEmbeddings], dim: Callable[[], int]) -> SegmentEmbeddings:
    """The chunks' results as one SegmentEmbeddings (window rows offset to the whole list's
    segment rows; plain arrays, embedded without windows, give no windows)."""
    if not parts:
        empty = np.zeros((0, dim()), dtype=np.float32)
        return SegmentEmbeddings(empty, empty, np.zeros(0, dtype=np.int64))
    if not isinstance(parts[0], SegmentEmbeddings):
        segments = np.concatenate(parts).astype(np.float32)
        return SegmentEmbeddings(segments, segments[:0], np.zeros(0, dtype=np.int64))
    offsets = np.cumsum([0] + [len(p.segments) for p in parts[:-1]])
    return SegmentEmbeddings(
        np.concatenate([p.segments for p in parts]).astype(np.float32),
        np.concatenate([p.windows for p in parts]).astype(np.float32),
        np.concatenate([p.window_segment + off for p, off in zip(parts, offsets, strict=True)]).astype(
            np.int64
        ),
    )


__all__ = [
    "EMBEDDERS",
    "EMBEDDER_DIMS",
    "Embedder",
    "SegmentEmbeddings",
    "WindowConfig",
    "check_jobs",
    "embed_segments",
    "embed_segments_with_windows",
    "get_embedder",
    "shutdown_pool",
]
