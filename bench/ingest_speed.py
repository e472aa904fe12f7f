"""Segmentation + attribute measurement + default embedding (resemblyzer) speed against real time.

    .venv/bin/python bench/ingest_speed.py [--seconds 120] [--jobs 2] [--ray-jobs 1]

Builds ~2 minutes of synthetic call-like audio (voice-like turns of several speakers separated
by silences), then times, in the same run:
  segmentation      find_nonsilent + 4-8 s cuts over all audio
  attributes        core.audio.attributes.measure_segments over every segment (F0, loudness,
                    rate, SNR, voicing; one process, as ingest runs it)
  embed 2x1         embed_segments(jobs=2): 2 worker processes x 1 torch thread (pool warmed first)
  baseline 1x2      one process, 2 torch threads (torch's default on 2 cores)
  baseline 1x1      one process, 1 torch thread
and end-to-end cold `ingest()` runs of the same audio written to disk (decoding, hashing,
segmentation, attributes, embedding, workspace write; ingest starts worker processes only for
>= 600 s of audio), after one warm-up run, once as shipped and once with the attribute
measurement replaced by NaNs, so its share of ingest is measured in the same run; then the same
files through `ingest(ray="local")` (a local Ray of this machine's cores; Ray start timed apart
and outside the figure, as is a first Ray run that starts its worker processes): the cold Ray
ingest against the cold local one, in x real time, with the same embeddings (to float rounding) asserted. The last line is key=value pairs:
x_realtime (audio seconds per second of segmentation + attributes + 2x1 embedding; target >= 50
on 2 cores), attributes_x_realtime (segment seconds measured per second), ingest_x_realtime and
ingest_no_attributes_x_realtime (cold end-to-end), ray_ingest_x_realtime and ray_speedup (the Ray
ingest's x real time over the local one's: below 1 means Ray is slower here), the embedding
baselines and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from core.constants import SAMPLE_RATE  # noqa: E402
from core.democorpus.synthetic_voice import speaker_from_index, utterance  # noqa: E402


def synthetic_calls(total_s: float, seed: int = 0) -> list[np.ndarray]:
    """~total_s seconds as 20 s 'calls': two speakers' turns (3-9 s) with 0.6-2 s silences."""
    rng = np.random.default_rng(seed)
    calls, made, k = [], 0.0, 0
    while made < total_s:
        parts, length = [], 0.0
        spk = [speaker_from_index(2 * k), speaker_from_index(2 * k + 1)]
        while length < 20.0:
            turn = float(rng.uniform(3.0, 9.0))
            parts.append(utterance(spk[len(parts) % 2], turn, seed=int(rng.integers(1 << 30))))
            gap = float(rng.uniform(0.6, 2.0))
            parts.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
            length += turn + gap
        call = np.concatenate(parts)
        noise = rng.normal(0, 10 ** (-60 / 20), call.shape).astype(np.float32)
        calls.append(call + noise)
        made += len(call) / SAMPLE_RATE
        k += 1
    return calls


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of synthetic audio")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes for the measured run")
    parser.add_argument(
        "--ray-jobs",
        type=int,
        default=None,
        help="embedding actors of the Ray run (default: --jobs)",
    )
    args = parser.parse_args()

    import torch

    from core.audio.attributes import measure_segments
    from core.audio.read import cut, save_wav
    from core.audio.segmentation import SegmentationConfig, segment_audio
    from core.embedders import MIN_POOL_AUDIO_S, embed_segments, get_embedder, shutdown_pool
    from core.workspace import ingest as ingest_module
    from core.workspace.ingest import ingest

    calls = synthetic_calls(args.seconds)
    audio_s = sum(len(c) for c in calls) / SAMPLE_RATE
    print(
        f"audio: {len(calls)} calls, {audio_s:.1f} s; cpus={os.cpu_count()} load_avg={os.getloadavg()[0]:.2f}"
    )

    cfg = SegmentationConfig()
    get_embedder("resemblyzer", device="cpu")  # import + model load outside the timings
    segment_audio(calls[0][: SAMPLE_RATE * 5], SAMPLE_RATE, cfg)  # librosa warm-up

    def segment_all():
        return [
            cut(c, SAMPLE_RATE, r.start_s, r.end_s) for c in calls for r in segment_audio(c, SAMPLE_RATE, cfg)
        ]

    pieces, t_seg = timed(segment_all)
    seg_s = sum(len(p) for p in pieces) / SAMPLE_RATE
    print(
        f"segmentation: {len(pieces)} segments ({seg_s:.1f} s of speech) in {t_seg:.3f} s "
        f"= {audio_s / t_seg:.0f}x real time"
    )
    measure_segments(pieces[:2], SAMPLE_RATE)  # scipy.fft plans, soxr: warm-up
    measured, t_attr = timed(lambda: measure_segments(pieces, SAMPLE_RATE))
    print(
        f"attributes: {len(measured)} segments in {t_attr:.3f} s = {seg_s / t_attr:.0f}x real time "
        f"({audio_s / t_attr:.0f}x of all audio)"
    )

    # warm the worker pool (process start + model load once per pool), then time the work
    _, t_pool = timed(
        lambda: embed_segments(
            "resemblyzer",
            pieces[: 2 * args.jobs],
            jobs=args.jobs,
            batch_size=1,
            progress=False,
            device="cpu",
            pool=True,
        )
    )
    emb2, t_2x1 = timed(
        lambda: embed_segments("resemblyzer", pieces, jobs=args.jobs, progress=False, device="cpu", pool=True)
    )
    shutdown_pool()
    torch.set_num_threads(2)
    emb_1x2, t_1x2 = timed(lambda: get_embedder("resemblyzer", device="cpu").embed(pieces))
    emb_1x1, t_1x1 = timed(
        lambda: embed_segments("resemblyzer", pieces, jobs=1, progress=False, device="cpu")
    )
    assert np.abs(emb2 - emb_1x1).max() < 1e-4 and np.abs(emb2 - emb_1x2).max() < 1e-4

    x_rt = audio_s / (t_seg + t_attr + t_2x1)
    print(
        f"embedding {args.jobs}x1 (warm pool): {t_2x1:.2f} s = {audio_s / t_2x1:.0f}x real time "
        f"(pool start + model load: {t_pool:.2f} s, once)"
    )
    print(f"baseline embedding 1 process x 2 threads: {t_1x2:.2f} s = {audio_s / t_1x2:.0f}x real time")
    print(f"baseline embedding 1 process x 1 thread:  {t_1x1:.2f} s = {audio_s / t_1x1:.0f}x real time")
    print(f"speedup {args.jobs}x1 vs 1x2: {t_1x2 / t_2x1:.2f}; vs 1x1: {t_1x1 / t_2x1:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "calls"
        for i, c in enumerate(calls):
            save_wav(root / f"call{i:03d}.wav", c)
        os.environ["VOXSAE_DATA"] = str(Path(tmp) / "data")

        def cold(name: str):
            return timed(lambda: ingest(root, name, jobs=args.jobs, progress=False, device="cpu"))

        cold("bench-warm-up")  # first-call costs (imports, lazy model parts) go to neither timing
        res, t_cold = cold("bench")
        shipped = ingest_module.measure_segments
        ingest_module.measure_segments = lambda audios, sr: measure_segments([], sr).reindex(
            range(len(audios))
        )
        try:
            _, t_cold_bare = cold("bench-no-attributes")  # its own workspace: its own cache
        finally:
            ingest_module.measure_segments = shipped
        _, t_cached = cold("bench")
        shutdown_pool()
        t_ray_start, t_ray, ray_jobs = ray_run(root, res.workspace, args.ray_jobs or args.jobs)
    print(
        f"end-to-end ingest (cold: decode, hash, segment, measure, embed, write; worker processes only "
        f"from {MIN_POOL_AUDIO_S:.0f} s of audio): {t_cold:.2f} s = {audio_s / t_cold:.0f}x real time; "
        f"without the attributes {t_cold_bare:.2f} s = {audio_s / t_cold_bare:.0f}x; "
        f"re-run from cache {t_cached:.2f} s ({res.segments} segments)"
    )
    print(
        f"ray ingest (local Ray, {ray_jobs} embedding actor(s); Ray started in {t_ray_start:.1f} s, once): "
        f"{t_ray:.2f} s = {audio_s / t_ray:.0f}x real time; local {audio_s / t_cold:.0f}x; "
        f"the same segments, embeddings equal to float rounding"
    )
    print(
        f"x_realtime={x_rt:.1f} attributes_x_realtime={seg_s / t_attr:.0f} "
        f"ray_ingest_x_realtime={audio_s / t_ray:.0f} ray_speedup={t_cold / t_ray:.2f} "
        f"ingest_x_realtime={audio_s / t_cold:.0f} ingest_no_attributes_x_realtime={audio_s / t_cold_bare:.0f} "
        f"baseline_1x2={audio_s / (t_seg + t_attr + t_1x2):.1f} baseline_1x1={audio_s / (t_seg + t_attr + t_1x1):.1f} "
        f"load_avg={os.getloadavg()[0]:.2f}"
    )
    return 0


def ray_run(root: Path, local_ws, jobs: int) -> tuple[float, float, int]:
    """(Ray start s, cold Ray ingest s, actors) on the files under root, in a Ray sized as
    `ingest --ray` sizes its own (ray_ingest.local_cpus); a warm-up run first (the worker
    processes start and import once), then a cold run into its own workspace and cache."""
    import logging

    import pandas as pd
    import ray

    from core.workspace.ingest import ingest
    from core.workspace.ray_ingest import local_cpus

    _, t_start = timed(
        lambda: ray.init(
            num_cpus=local_cpus(jobs),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    )
    try:

        def run(name: str):
            return ingest(root, name, jobs=jobs, progress=False, device="cpu", ray="local")

        run("bench-ray-warm-up")
        got, t_ray = timed(lambda: run("bench-ray"))
    finally:
        ray.shutdown()
    pd.testing.assert_frame_equal(got.workspace.segments, local_ws.segments, check_exact=True)
    # equal up to float rounding (Ray batches segments in another composition; batched matmuls round by shape)
    np.testing.assert_allclose(
        np.asarray(got.workspace.embeddings), np.asarray(local_ws.embeddings), atol=1e-6
    )
    return t_start, t_ray, jobs


if __name__ == "__main__":
    raise SystemExit(main())
