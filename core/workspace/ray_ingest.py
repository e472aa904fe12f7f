"""`ingest DIR --workspace W --ray [ADDRESS]`: the per-file work of ingest on Ray Data.

    check_address(address)               InputError at once when nothing listens at ADDRESS
    run_files(todo, ...) -> {rel: FileResult}   decode, segment, measure, embed on Ray; each
                                         file's cache entry (its shard) saved as it completes

What runs where: the driver (the machine running `ingest`) walks the folder, hashes each file,
looks its per-file cache entry up (core.workspace.ingest.cache_key), and hands Ray only the
files it has no entry for. On Ray, a stateless task per file decodes, segments and measures it
(ingest._segment_file, the local path's own function: one row per segment, or one row saying why
the file is skipped); the segments then stream in batches through an actor pool
(`map_batches(SegmentEmbedder, concurrency=jobs)`) whose actors load the embedder once each and
embed with one torch thread, as the local worker processes do. The driver collects the rows and,
as soon as all of a file's segments are back, writes that file's cache entry atomically: a killed
run resumes from the files it completed, and nothing is half-written. The workspace itself is
built and written by the driver, from the same entries as the local path: segments.parquet is
identical, and the embeddings and windows equal the local path's to float rounding (about 1e-7:
Ray Data batches segments in another composition, and a batched matmul rounds by its batch's
shape), so the fingerprint, a hash of those bytes, can differ.

The audio folder must be readable at the same path on every node (workers open the files by
the driver's path), and VoxSAE with the same environment must be installed on each node.

`address` None or LOCAL starts a Ray of this machine's cores (ray.init(num_cpus=...,
include_dashboard=False)) and stops it afterwards; a caller that already runs Ray keeps its
session. Any Ray failure (no cluster at ADDRESS, a worker that died) is one VoxSAEError.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.embedders.base import WindowConfig
from core.errors import InputError, VoxSAEError

LOCAL = "local"
"""`--ray` without an address: start a Ray of this machine for the run."""
CONNECT_TIMEOUT_S = 3.0
"""How long the driver waits for a TCP answer at ADDRESS before refusing (ray.init itself
retries for minutes against an address where nothing listens)."""
EMBED_BATCH = 32
"""Segments per actor call (core.embedders.CHUNK: the local path's batch)."""
SEGMENT_TASK_CPUS = 0.5
"""Logical CPUs of one decode/segment task: the embedding actors hold one each, and a whole CPU
per task would leave none to the tasks that feed them when --jobs equals the cores."""


class RayIngestError(VoxSAEError):
    """Ray could not be reached or failed during the run (a worker died, a task raised)."""


def _host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of ADDRESS ('HOST:PORT' or 'ray://HOST:PORT'); None for 'auto'."""
    if address == "auto":
        return None
    bare = address.removeprefix("ray://")
    host, sep, port = bare.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"--ray {address}: expected HOST:PORT (a Ray head node's GCS address), or auto")
    return host.strip("[]"), int(port)


def check_address(address: str | None) -> None:
    """Refuse at once an ADDRESS where nothing answers (nothing is started or written)."""
    if address in (None, LOCAL):
        return
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayIngestError(
            f"--ray {address}: cannot connect to a Ray cluster there ({reason}); "
            "start one with `ray start --head` or leave --ray out to ingest on this machine"
        ) from None


_RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): (.+)$", re.MULTILINE)
"""A `Type: message` line of a traceback printed into a Ray error's text."""


def ray_failure(exc: BaseException) -> str:
    """One line for a Ray exception: what the worker raised (Ray ships it as the text of its own
    wrapper: the first `Type: message` line that is not Ray's), else the Ray error's type and first
    line. A worker's traceback stays out of the user's terminal."""
    text = str(exc)
    for kind, message in _RAISED.findall(text):
        if not kind.startswith("ray."):
            return f"{kind}: {message.strip()}"
    lines = text.strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else 'no message'}"


@contextlib.contextmanager
def ray_session(address: str | None, cpus: int) -> Iterator[None]:
    """Ray for the run: joined at ADDRESS, or started here with `cpus` CPUs; left as found."""
    import ray

    if ray.is_initialized():  # the caller's own session (a notebook, a test): used and kept
        yield
        return
    check_address(address)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray's C++ log lines are not the user's
    try:
        if address in (None, LOCAL):
            ray.init(
                num_cpus=cpus,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as exc:  # noqa: BLE001 - any failure to start or join is the user's one line
        raise RayIngestError(f"--ray {address or LOCAL}: Ray did not start ({ray_failure(exc)})") from None
    try:
        yield
    finally:
        ray.shutdown()


# -- the Ray stages (run in Ray worker processes) ------------------------------------------------
def _segment_rows(row: dict, cfg_dict: dict, telephony: bool) -> list[dict]:
    """One file -> one row per segment (its audio, times and measured attributes), or one row
    (index -1) saying why it is skipped. The local path's _segment_file does the work."""
    from core.audio.segmentation import SegmentationConfig
    from core.workspace.ingest import _segment_file

    rel, path = str(row["rel"]), Path(str(row["path"]))
    res, pieces = _segment_file(path, rel, SegmentationConfig(**cfg_dict), telephony)
    if res.skipped:
        return [_row(rel, -1, 0, 0.0, 0.0, np.zeros(0), np.zeros(1, np.float32), res.skipped)]
    n = len(pieces)
    return [
        _row(rel, i, n, res.starts[i], res.ends[i], res.attributes[i], pieces[i].astype(np.float32), "")
        for i in range(n)
    ]


def _row(rel, index, n, start, end, attributes, audio, skipped) -> dict:
    return {
        "rel": rel,
        "index": int(index),
        "n": int(n),
        "start": float(start),
        "end": float(end),
        "attributes": np.asarray(attributes, np.float64),
        "audio": audio,
        "skipped": skipped,
    }


class SegmentEmbedder:
    """A Ray Data actor: loads the embedder once, then embeds batches of segment rows (skipped-file
    rows pass through with no embedding). One torch thread, as the local worker processes."""

    def __init__(self, name: str, checkpoint: str | None, device: str | None, windows: dict):
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
        from core.embedders import NUMPY_ONLY, get_embedder
        from core.embedders.base import pick_device

        device = "cpu" if name in NUMPY_ONLY else pick_device(device)
        if name not in NUMPY_ONLY and device == "cpu":
            import torch

            torch.set_num_threads(1)
        self.model = get_embedder(name, checkpoint=checkpoint, device=device)
        self.windows = WindowConfig(**windows)

    def __call__(self, batch: dict) -> dict:
        dim = self.model.dim
        used = np.flatnonzero(np.asarray(batch["index"]) >= 0)
        emb = self.model.embed_with_windows(
            [np.asarray(batch["audio"][i], np.float32) for i in used], self.windows
        )
        n = len(batch["index"])
        segments = np.zeros((n, dim), np.float32)
        segments[used] = emb.segments
        per_row = [np.zeros(0, np.float32) for _ in range(n)]
        for k, i in enumerate(used):  # a row's windows, flattened: [w * dim]
            per_row[i] = np.ascontiguousarray(emb.windows[emb.window_segment == k]).reshape(-1)
        out = {c: batch[c] for c in ("rel", "index", "n", "start", "end", "attributes", "skipped")}
        out["embedding"] = segments
        out["windows"] = np.array(per_row + [None], dtype=object)[:-1]  # an object column, ragged
        return out


# -- the driver ---------------------------------------------------------------------------------
def run_files(
    todo: list[tuple[Path, str, Path]],
    *,
    address: str | None,
    embedder: str,
    checkpoint: str | None,
    device: str | None,
    cfg,
    telephony: bool,
    windows: WindowConfig,
    dim: int,
    jobs: int,
    progress: bool,
) -> dict:
    """(path, rel, cache_path) of each file to process -> {rel: FileResult}; each file's cache
    entry is written (atomically, by this process) as soon as all its segments are back."""
    from core.workspace import ingest as local

    if not todo:
        return {}
    import ray
    import ray.data

    with ray_session(address, cpus=local_cpus(jobs)):
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = progress
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its INFO/WARNING lines are about Ray
        cluster_cpus = ray.cluster_resources().get("CPU", 0.0)
        if jobs + SEGMENT_TASK_CPUS > cluster_cpus:
            raise InputError(
                f"--jobs {jobs}: the Ray cluster has {cluster_cpus:g} CPU(s); the embedding actors take one "
                f"each and decoding needs {SEGMENT_TASK_CPUS:g} more (at most --jobs {int(cluster_cpus - 1)})"
            )
        cache_of = {rel: cache_path for _, rel, cache_path in todo}
        files = ray.data.from_items([{"rel": rel, "path": str(path)} for path, rel, _ in todo])
        rows = files.repartition(len(todo)).flat_map(
            _segment_rows, fn_args=(cfg.to_dict(), telephony), num_cpus=SEGMENT_TASK_CPUS
        )
        embedded = rows.map_batches(
            SegmentEmbedder,
            fn_constructor_args=(embedder, checkpoint, device, windows.to_dict()),
            batch_size=EMBED_BATCH,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=jobs),
            num_cpus=1,
        )
        results: dict = {}
        partial: dict[str, list[tuple]] = {}
        try:
            for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
                for j in range(len(batch["rel"])):
                    rel = str(batch["rel"][j])
                    if int(batch["index"][j]) < 0:
                        res = local.FileResult.skip(rel, str(batch["skipped"][j]))
                        local._save_cache(cache_of[rel], _with_dim(res, dim))
                        results[rel] = res
                        continue
                    got = partial.setdefault(rel, [])
                    got.append(
                        tuple(batch[c][j] for c in ("index", "start", "end", "attributes", "embedding"))
                    )
                    got[-1] += (np.asarray(batch["windows"][j], np.float32).reshape(-1, dim),)
                    if len(got) == int(batch["n"][j]):
                        results[rel] = _file_result(rel, partial.pop(rel))
                        local._save_cache(cache_of[rel], results[rel])
        except ray.exceptions.RayError as exc:
            raise RayIngestError(f"ingest on Ray failed: {ray_failure(exc)}") from None
        except Exception as exc:  # Ray Data re-raises a stage's exception as itself (UserCodeException)
            if type(exc).__module__.startswith("ray"):
                raise RayIngestError(f"ingest on Ray failed: {ray_failure(exc)}") from None
            raise
    missing = sorted(set(cache_of) - set(results))
    if missing:  # Ray returned without them: never a silent gap in the workspace
        raise RayIngestError(
            f"ingest on Ray returned no result for {len(missing)} file(s), e.g. {missing[0]}"
        )
    return results


def local_cpus(jobs: int) -> int:
    """Logical CPUs of the Ray `--ray` starts here: one per core (at least one per actor), plus one
    for the decoding tasks, so `--jobs` equal to the cores never leaves the tasks none."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(jobs, cores) + 1


def _with_dim(res, dim: int):
    """A skipped file's cache entry as the local path stores it (embeddings [0, dim])."""
    from dataclasses import replace

    return replace(res, embeddings=np.zeros((0, dim), np.float32))


def _file_result(rel: str, got: list[tuple]):
    """One file's segment rows (any order) -> its FileResult, as the local path builds it."""
    from core.workspace.ingest import FileResult

    got.sort(key=lambda r: int(r[0]))
    return FileResult(
        rel,
        np.array([r[1] for r in got], np.float64),
        np.array([r[2] for r in got], np.float64),
        np.stack([r[4] for r in got]).astype(np.float32),
        np.stack([r[3] for r in got]).astype(np.float64),
        "",
        np.concatenate([r[5] for r in got]).astype(np.float32),
        np.concatenate([np.full(len(r[5]), i, np.int64) for i, r in enumerate(got)]),
    )
