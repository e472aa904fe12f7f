"""`python -m core demo-corpus`: synthesise and embed the embedded default workspace (data/demo).

Everything is generated offline and deterministically from the seed (see core.democorpus.calls for
what a corpus holds and how language cues are made):

1. plan the pseudo-speakers and calls (main process, cheap);
2. render the calls in `jobs` worker processes (espeak-ng keeps global state: one engine per
   process) -> 8 kHz FLAC under the workspace's audio/ folder + labelled 4-8 s segments found by
   core.audio.segmentation on the stored audio;
3. embed the segments and their windows with core.embedders.embed_segments_with_windows (the
   same path and window settings `ingest` uses);
4. write the workspace atomically (Workspace.create, audio moved in as an extra folder).

Idempotent: a workspace built with the same settings fingerprint is left alone ('up to date').
Refused before any work: a negative --seed, a --scale whose audio (about AUDIO_BYTES_PER_SCALE
per unit) the disk there cannot hold, a --jobs count no machine here runs (embedders.check_jobs),
and a --workspace folder that is not a workspace (workspace.check_target).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core import atomic
from core.constants import AUDIO_DIR, DEFAULT_EMBEDDER, DEFAULT_WORKSPACE, SAMPLE_RATE
from core.democorpus import calls as ca
from core.errors import InputError
from core.workspace.ingest import WINDOWS
from core.workspace.workspace import Windows, Workspace, announce_replacement, check_target, read_info

REGIONS_FILE = "regions.parquet"
"""Ground truth of every call (one row per turn / music / announcement), inside audio/."""
EMBED_CALLS_PER_BATCH = 48
"""Calls loaded and embedded together (bounds memory: about 48 x 60 s of segments)."""
DEMO_EMBEDDERS = ("resemblyzer", "mfcc-stats")
"""Embedders that need no file from the user (weights inside a package, or none at all)."""
AUDIO_BYTES_PER_SCALE = 270e6
"""Bytes of FLAC calls (plus segments and embeddings) per unit of --scale (260 MB of audio at 1)."""


def settings(seed: int, scale: float, embedder: str = DEFAULT_EMBEDDER) -> dict:
    from core.audio.attributes import ATTRIBUTES_VERSION
    from core.audio.segmentation import SegmentationConfig
    from core.democorpus.music import renderer

    return {
        "corpus_version": ca.CORPUS_VERSION,
        "attributes_version": ATTRIBUTES_VERSION,  # a demo built before (or with other) measured columns rebuilds
        "seed": int(seed),
        "scale": float(scale),
        "embedder": embedder,
        "segmentation": SegmentationConfig().to_dict(),
        "music_renderer": renderer(),
        "windows": WINDOWS.to_dict(),
    }


def settings_fingerprint(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def _render_worker(args) -> ca.CallResult:
    plan, speakers, out_dir, seed = args
    return ca.render_call(plan, speakers, out_dir, seed)


def _init_render_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"


RENDER_PRELOAD = ["core.democorpus.worker_preload"]
"""What the render forkserver imports (and warms up) before it forks workers."""


def render_calls(plans, speakers, out_dir: Path, seed: int, jobs: int, progress: bool) -> list[ca.CallResult]:
    """Render every call in worker processes, each call in a fresh process.

    espeak-ng carries internal state from one synthesis to the next (the same text comes out a
    few samples longer or shorter after other speech), and neither re-initialising nor its
    random seed resets it. So every call is rendered by a fresh child of a forkserver that never
    synthesised anything: a call's audio depends only on (seed, call), not on which worker
    rendered which calls before it, and the corpus is the same for any --jobs.
    """
    import multiprocessing as mp

    from tqdm import tqdm

    # a speaker table per call keeps the pickled work small
    work = [
        (p, {s: speakers[s] for s in {it[1] for it in p.items if it[0] == "turn"}}, str(out_dir), seed)
        for p in plans
    ]
    bar = tqdm(total=len(work), desc="synthesising calls", unit="call", disable=not progress)
    results: list[ca.CallResult] = []
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(RENDER_PRELOAD)
    pool = ctx.Pool(jobs, initializer=_init_render_worker, maxtasksperchild=1)
    try:
        for res in pool.imap(_render_worker, work, chunksize=1):
            results.append(res)
            bar.update(1)
        pool.close()
    finally:
        pool.terminate()
        pool.join()
        bar.close()
    return sorted(results, key=lambda r: r.index)


def segments_table(results: list[ca.CallResult]) -> pd.DataFrame:
    rows = []
    for res in results:
        for k, seg in enumerate(res.segments):
            rows.append(
                {
                    "segment_id": f"{res.call_id}-{k:03d}",
                    "source": res.source,
                    "start_s": round(seg["start_s"], 4),
                    "end_s": round(seg["end_s"], 4),
                    "duration_s": round(seg["end_s"] - seg["start_s"], 4),
                    "speaker": seg["speaker"],
                    "language": seg["language"],
                    "gender": seg["gender"],
                    "class": seg["class"],
                    "split": seg["split"],
                    "accent": seg["accent"],
                    "call": res.call_id,
                    **ca.segment_numbers(seg),
                }
            )
    return pd.DataFrame(rows)


def embed_table(
    table: pd.DataFrame, audio_dir: Path, embedder: str, jobs: int, progress: bool
) -> tuple[np.ndarray, Windows]:
    """Cut each segment from its stored call and embed it and its windows (batches of calls, one
    worker pool): (float32 [N, dim], the windows with their rows in `table`)."""
    from tqdm import tqdm

    from core.audio.read import cut, load_audio
    from core.embedders import embed_segments_with_windows

    calls = list(dict.fromkeys(table["source"]))
    out: list[np.ndarray] = []
    windows: list[np.ndarray] = []
    window_rows: list[np.ndarray] = []
    bar = tqdm(total=len(table), desc="embedding segments", unit="seg", disable=not progress)
    try:
        for lo in range(0, len(calls), EMBED_CALLS_PER_BATCH):
            batch_calls = calls[lo : lo + EMBED_CALLS_PER_BATCH]
            rows = table[table["source"].isin(batch_calls)]
            audios = []
            for source, group in rows.groupby("source", sort=False):
                audio = load_audio(audio_dir / source, SAMPLE_RATE)
                audios.extend(
                    cut(audio, SAMPLE_RATE, s, e)
                    for s, e in zip(group["start_s"], group["end_s"], strict=True)
                )
            emb = embed_segments_with_windows(embedder, audios, WINDOWS, jobs=jobs, progress=False)
            window_rows.append(emb.window_segment + sum(len(o) for o in out))
            windows.append(emb.windows)
            out.append(emb.segments)
            bar.update(len(audios))
    finally:
        bar.close()
    return np.concatenate(out), Windows(np.concatenate(windows), np.concatenate(window_rows))


def _audio_source(name: str, cfg: dict, root: Path) -> Workspace:
    """The workspace --audio-from names, checked to be a demo corpus of these settings."""
    src = Workspace.open(name)
    if src.root.resolve() == root.resolve():
        raise InputError(f"demo-corpus: --audio-from {name} is the workspace being built; name another one")
    prov = src.info.provenance
    if prov.get("command") != "demo-corpus":
        raise InputError(
            f"demo-corpus: --audio-from {name}: workspace {src.name} was not built by demo-corpus "
            f"({prov.get('command') or 'no command recorded'}); its audio is not the demo's"
        )
    theirs = dict(prov.get("settings") or {})
    differ = sorted(k for k in set(cfg) | set(theirs) if k != "embedder" and cfg.get(k) != theirs.get(k))
    if differ:
        shown = ", ".join(f"{k} {theirs.get(k)!r} (wanted {cfg.get(k)!r})" for k in differ)
        raise InputError(
            f"demo-corpus: --audio-from {name}: workspace {src.name} was built with other settings: {shown}"
        )
    if not (src.audio_dir / REGIONS_FILE).is_file():
        raise InputError(f"demo-corpus: --audio-from {name}: {src.audio_dir} holds no {REGIONS_FILE}")
    return src


def _reuse_audio(src: Workspace, staging: Path) -> tuple[pd.DataFrame, int]:
    """Link (or copy, across file systems) src's calls into staging; (its segment table, dropped)."""
    for path in sorted(src.audio_dir.iterdir()):
        if not path.is_file():
            continue
        try:
            os.link(path, staging / path.name)  # the calls are never rewritten in place: a link is safe
        except OSError:
            shutil.copy2(path, staging / path.name)
    table = src.segments.copy()
    return table, int(src.info.provenance.get("segments_dropped_unlabelled", 0))


def _check_room(root: Path, scale: float) -> None:
    """InputError when the disk holding `root` has less room than a corpus of `scale` takes."""
    need = AUDIO_BYTES_PER_SCALE * scale
    existing = next(p for p in (root, *root.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise InputError(
            f"demo-corpus: --scale {scale:g} would write about {need / 1e9:,.1f} GB of audio to {root}; "
            f"{free / 1e9:,.1f} GB free there"
        )


def build(
    workspace: str = DEFAULT_WORKSPACE,
    *,
    scale: float = 1.0,
    seed: int = 0,
    jobs: int = 2,
    force: bool = False,
    embedder: str = DEFAULT_EMBEDDER,
    audio_from: str | None = None,
    progress: bool = True,
) -> tuple[Workspace, bool]:
    """Build (or find up to date) the demo workspace. Returns (workspace, built_now).

    `audio_from` names a demo workspace built with the same settings but another embedder: its
    calls and segment table are reused (the synthesis is deterministic, so rendering again would
    give the same audio) and only the embedding runs, so the same segment ids exist in both
    workspaces and `universality --model-workspace` can compare the two embedders' SAEs.
    """
    from core.embedders import check_jobs

    if not (scale > 0 and np.isfinite(scale)):
        raise InputError(f"demo-corpus: --scale must be a positive number, got {scale}")
    if seed < 0:
        raise InputError(f"demo-corpus: --seed must be 0 or more, got {seed}")
    check_jobs(jobs, "demo-corpus")
    if embedder not in DEMO_EMBEDDERS:
        raise InputError(
            f"demo-corpus: --embedder {embedder!r} is not one the demo can use ({', '.join(DEMO_EMBEDDERS)}: "
            "they need no weights file); for another, `ingest` the demo's audio folder with it"
        )
    cfg = settings(seed, scale, embedder)
    fp = settings_fingerprint(cfg)
    root = check_target(workspace)  # a user's own folder is refused before anything is synthesised
    source = None if audio_from is None else _audio_source(audio_from, cfg, root)
    info = None if force else read_info(root)
    if info is not None and info.provenance.get("settings_fingerprint") == fp:
        return Workspace.open(root), False
    _check_room(root, scale)
    announce_replacement(root, "demo-corpus")
    t0 = time.time()
    speakers, plans = ca.plan_corpus(seed, scale)
    staging = atomic.staging_dir(root.parent, root.name, suffix=".audio")
    try:
        if source is None:
            results = render_calls(plans, speakers, staging, seed, jobs, progress)
            table = segments_table(results)
            if table.empty:
                raise InputError("demo-corpus: the synthesised calls produced no segments")
            regions = pd.DataFrame([r for res in results for r in res.regions])
            regions.to_parquet(staging / REGIONS_FILE, index=False)
            dropped = int(sum(r.dropped for r in results))
        else:
            table, dropped = _reuse_audio(source, staging)
        t_render = time.time() - t0
        embeddings, windows = embed_table(table, staging, embedder, jobs, progress)
        from core.embedders import get_embedder, shutdown_pool

        shutdown_pool()
        t_total = time.time() - t0
        provenance = {
            "command": "demo-corpus",
            "seed": int(seed),
            "scale": float(scale),
            "settings": cfg,
            "settings_fingerprint": fp,
            "music_renderer": cfg["music_renderer"],
            "tts": "espeak-ng via espeakng_loader (ctypes)",
            "channel_routing": (
                "one telephone channel per call (core.audio.channel.telephone_channel: band-pass, 8 kHz, "
                "mu-law, light noise) with band edges (250-350 Hz / 3200-3500 Hz), noise "
                "(-68..-60 dBFS) and level drawn per call independently of language; no per-language route"
            ),
            "language_cues": (
                "Spanish speakers use espeak-ng Spanish voices (es, es-419) with Spanish prosody (faster "
                "rate ~215 vs ~155 wpm, wider pitch range 65-95 vs 15-45); ~4% of English speakers are Spanish-accented (Spanish voice "
                "reading English, language 'en'); voice variants shared by both languages"
            ),
            "audio_format": f"FLAC {ca.STORE_RATE} Hz 16-bit, one file per call in {AUDIO_DIR}/",
            "ground_truth": f"{AUDIO_DIR}/{REGIONS_FILE}",
            "speakers": len(speakers),
            "calls": len(plans),
            "segments_dropped_unlabelled": dropped,
            "build_seconds": round(t_total, 1),
            "render_seconds": round(t_render, 1),
            "jobs": int(jobs),
            "windows": get_embedder(embedder).window_settings(WINDOWS),
        }
        if source is not None:
            provenance["audio_from"] = {"workspace": source.name, "fingerprint": source.fingerprint}
        ws = Workspace.create(
            root,
            table,
            embeddings,
            embedder=embedder,
            sample_rate=SAMPLE_RATE,
            provenance=provenance,
            extra_files={AUDIO_DIR: staging},
            windows=windows,
        )
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return ws, True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace", default=DEFAULT_WORKSPACE, help="workspace name or path (default: demo)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="corpus size factor (1.0: 360 speakers, ~3,300 segments)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same corpus)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for synthesis and embedding")
    parser.add_argument("--force", action="store_true", help="rebuild even when the workspace is up to date")
    parser.add_argument(
        "--embedder",
        default=DEFAULT_EMBEDDER,
        help=f"embedder of the segments (default {DEFAULT_EMBEDDER}; e.g. mfcc-stats for a second embedding)",
    )
    parser.add_argument(
        "--audio-from",
        metavar="WORKSPACE",
        help="reuse the calls of this demo workspace (same --seed/--scale) and only embed them: the same "
        "segment ids in both, for `universality --model-workspace`",
    )


def main(args: argparse.Namespace) -> int:
    ws, built = build(
        args.workspace,
        scale=args.scale,
        seed=args.seed,
        jobs=args.jobs,
        force=args.force,
        embedder=args.embedder,
        audio_from=args.audio_from,
    )
    if not built:
        print(f"workspace {ws.name} is up to date ({ws.root}); use --force to rebuild")
        return 0
    from core.workspace.summary import print_summary

    secs = ws.info.provenance.get("build_seconds")
    print(f"built workspace {ws.name} at {ws.root} in {secs} s", file=sys.stderr)
    print_summary(ws)
    return 0


__all__ = ["build", "settings", "settings_fingerprint", "add_arguments", "main"]
