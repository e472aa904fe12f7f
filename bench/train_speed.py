"""SAE training speed, from one run on one machine (CPU unless CUDA is present).

    .venv/bin/python bench/train_speed.py [--rows 1100000] [--device cpu] [--threads N]
                                          [--stream-rows 2000000] [--stream-steps 200] [--only stream]

1. Encoder forward (pre-activations + TopK, K=20) GFLOP/s for latents 200, 600, 1200 against a
   plain torch matmul of the same shape [B, d_in] @ [d_in, L] timed in the same run, and training
   samples/s of one model (fast path: stacked encoder, embedding_bag decoder).
2. SAELens: its TopKTrainingSAE.training_forward_pass on the same in-memory batches, driven by a
   step that mirrors SAETrainer._train_step (firing stats, backward, grad-norm clip, Adam step) -
   SAELens's trainer itself wants a data provider/runner config, so its step loop is mirrored here.
3. The paper's 42-model grid (latents 100-600 x K 5-35) on `--rows` x 192 synthetic embeddings:
   ours trains every model from each batch in one pass; SAELens trains the 42 models one by one.
   Both per-epoch times are extrapolated from a measured number of steps (said in the output).

4. Streamed training (core.training.shards) on a `--stream-rows` x 192 synthetic memory-mapped file
   (written once under $TMPDIR, reused): each path in a child process of its own, so its peak RSS
   (VmHWM) is its own - the in-memory path (every training row in one tensor,
   shuffled_batches) and the streamed one (the up-front scan, then StreamedBatches with
   TrainConfig's default shards and buffer); both keep 10 % validation rows in memory as
   train_grid does and train one L600-K20 model for `--stream-steps` steps. `--stream-rows 0`
   skips it; `--only stream` runs it alone.

Last line: `peak_fraction=F step_over_matmul=G saelens_one_ratio=O saelens_ratio=R` - F = our
encoder-forward GFLOP/s / matmul GFLOP/s at latents 600, K 20; G = one grid step (all 42 models:
forward, loss, backward, Adam) / the grid's encoder matmuls alone, same batch; O = SAELens's step /
ours for one L600-K20 model; R = SAELens grid epoch time / our grid epoch time; then
`train_stream_rss_gb=... stream_samples_per_s=... inmemory_rss_gb=... inmemory_samples_per_s=...`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.sae import SAEConfig, cpu_topk, create_sae  # noqa: E402
from core.sae.stack import SAEStack  # noqa: E402

D_IN = 192
BATCH = 1024
LATENTS = (100, 200, 300, 400, 500, 600)
KS = (5, 10, 15, 20, 25, 30, 35)


def synthetic(rows: int, seed: int = 0) -> torch.Tensor:
    """rows x 192 embeddings: 8 of 512 unit directions with exponential weights, plus noise."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(512, D_IN)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    out = np.empty((rows, D_IN), dtype=np.float32)
    for i in range(0, rows, 100_000):
        n = min(100_000, rows - i)
        idx = rng.integers(0, 512, size=(n, 8))
        w = rng.exponential(size=(n, 8)).astype(np.float32)
        out[i : i + n] = np.einsum("nk,nkd->nd", w, dirs[idx]) + 0.05 * rng.normal(size=(n, D_IN)).astype(
            np.float32
        )
    return torch.from_numpy(out)


def timeit(fn, reps: int, warmup: int = 2, sync=lambda: None) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def batches(data: torch.Tensor, device, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, data.shape[0], (BATCH,), generator=g)
        yield data[idx].to(device)


def our_stack(d_sae: int, ks, device, b_dec) -> SAEStack:
    saes = []
    for i, k in enumerate(ks):
        s = create_sae(SAEConfig("topk", d_in=D_IN, d_sae=d_sae, k=k, seed=i, dead_after_samples=100_000))
        s.init_weights(b_dec)
        saes.append(s)
    return SAEStack.from_saes(saes).to(device)


def saelens_model(d_sae: int, k: int, device, b_dec):
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    cfg = TopKTrainingSAEConfig(d_in=D_IN, d_sae=d_sae, k=k, device=str(device))
    sae = TopKTrainingSAE(cfg).to(device)
    with torch.no_grad():
        sae.b_dec.copy_(b_dec)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3, betas=(0.9, 0.999))
    since_fired = torch.zeros(d_sae, device=device)

    def step(x):
        from sae_lens.saes.sae import TrainStepInput

        sae.train()
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients={},
                dead_neuron_mask=since_fired > 1000,
                n_training_steps=0,
                is_logging_step=False,
            )
        )
        with torch.no_grad():
            did_fire = out.feature_acts.bool().float().sum(-2).bool()
            since_fired.add_(1)
            since_fired[did_fire] = 0
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    return step


def mapped_rows(rows: int) -> Path:
    """A rows x 192 .npy file of synthetic() rows, written 100,000 at a time (never all in memory)."""
    path = Path(tempfile.gettempdir()) / f"voxsae-bench-stream-{rows}x{D_IN}.npy"
    if path.exists() and np.load(path, mmap_mode="r").shape == (rows, D_IN):
        return path
    tmp = path.with_suffix(".tmp.npy")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(rows, D_IN))
    for i in range(0, rows, 100_000):
        n = min(100_000, rows - i)
        out[i : i + n] = synthetic(n, seed=i).numpy()
    out.flush()
    del out
    os.replace(tmp, path)
    return path


def peak_rss_bytes() -> int:
    """This process's peak RSS: VmHWM (ru_maxrss survives exec, so a child would report its parent's)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stream_case(path: Path, mode: str, steps: int) -> dict:
    """One path on the mapped file, as train_grid drives it (run in a child process)."""
    from core.training.config import TrainConfig
    from core.training.shards import Piece, RowSource, StreamedBatches, piece_scale
    from core.training.trainer import shuffled_batches

    cfg = TrainConfig()
    arr = np.load(path, mmap_mode="r")
    n = len(arr)
    val_idx = np.arange(0, n, 10)
    train_idx = np.setdiff1d(np.arange(n), val_idx)
    t0 = time.perf_counter()
    x_val = torch.from_numpy(RowSource([Piece(arr, val_idx)]).read(0, len(val_idx)))
    if mode == "streamed":
        source = RowSource([Piece(arr, train_idx)])
        scale = source.scan().scale
        batches = StreamedBatches(source, BATCH, 0, cfg.shard_rows, cfg.buffer_shards)
    else:
        x_train = torch.from_numpy(np.asarray(arr[train_idx], dtype=np.float32))
        scale = piece_scale(x_train.numpy(), [len(train_idx)])
        batches = shuffled_batches(x_train, BATCH, 0)
    ready_s = time.perf_counter() - t0
    st = our_stack(600, [20], torch.device("cpu"), x_val[:20_000].mean(0))
    it = batches(0, 0)
    st.train_step(next(it), scale, 1e-3)  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        st.train_step(next(it), scale, 1e-3)
    per_s = steps * BATCH / (time.perf_counter() - t)
    rss_gb = peak_rss_bytes() / 1e9
    return {"mode": mode, "ready_s": ready_s, "samples_per_s": per_s, "rss_gb": rss_gb}


def stream_bench(rows: int, steps: int) -> dict:
    t = time.time()
    path = mapped_rows(rows)
    print(
        f"\nstreamed vs in-memory on {rows} x {D_IN} mapped rows ({path.stat().st_size / 1e9:.2f} GB, ready in {time.time() - t:.0f}s), {steps} steps of L600-K20:"
    )
    out = {}
    for mode in ("streamed", "inmemory"):
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--stream-case",
                mode,
                "--stream-file",
                str(path),
                "--stream-steps",
                str(steps),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
        )
        if proc.returncode:
            print(f"  {mode}: failed ({proc.stderr.strip().splitlines()[-1:]})")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        out[mode] = res
        print(
            f"  {mode:<9} peak RSS {res['rss_gb']:.2f} GB, rows ready in {res['ready_s']:.1f}s "
            f"({'the up-front check and scale scan' if mode == 'streamed' else 'loaded into one tensor'}), "
            f"{res['samples_per_s']:.0f} samples/s"
        )
    return out


def stream_figures(out: dict) -> str:
    get = lambda mode, key: f"{out[mode][key]:.3g}" if mode in out else "nan"  # noqa: E731
    return (
        f"train_stream_rss_gb={get('streamed', 'rss_gb')} stream_samples_per_s={get('streamed', 'samples_per_s')} "
        f"inmemory_rss_gb={get('inmemory', 'rss_gb')} inmemory_samples_per_s={get('inmemory', 'samples_per_s')}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_100_000)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--grid-steps", type=int, default=20, help="measured steps of the 42-model grid")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--stream-rows", type=int, default=2_000_000, help="rows of the streamed case (0: skip)")
    ap.add_argument("--stream-steps", type=int, default=200, help="measured steps of the streamed case")
    ap.add_argument("--only", choices=("stream",), default=None, help="run only the streamed case")
    ap.add_argument("--stream-case", choices=("streamed", "inmemory"), help=argparse.SUPPRESS)
    ap.add_argument("--stream-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stream_case:  # the child of stream_bench
        print(json.dumps(stream_case(Path(args.stream_file), args.stream_case, args.stream_steps)))
        return 0
    if args.only == "stream":
        print(f"torch threads={torch.get_num_threads()}, load avg {os.getloadavg()[0]:.1f}")
        print(stream_figures(stream_bench(args.stream_rows, args.stream_steps)))
        return 0
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    t0 = time.time()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"torch {torch.__version__} threads={torch.get_num_threads()}, device={device}, "
        f"load avg {os.getloadavg()[0]:.1f}"
    )
    data = synthetic(args.rows)
    n_train = int(args.rows * 0.9)
    steps_per_epoch = math.ceil(n_train / BATCH)
    b_dec = data[:20_000].mean(0)
    print(
        f"data: {args.rows} x {D_IN} synthetic (made in {time.time() - t0:.1f}s); batch {BATCH}; "
        f"{steps_per_epoch} steps/epoch on the 90% training split"
    )
    it = batches(data, device)
    x = next(it)

    # -- 1. encoder forward vs matmul, training samples/s -----------------------------------------
    peak = {}
    print("\nlatents  matmul GFLOP/s  encoder(topk) GFLOP/s  fraction  train samples/s (1 model, K=20)")
    for L in (200, 600, 1200):
        w = torch.randn(D_IN, L, device=device)
        t_mm = timeit(lambda w=w: x @ w, reps=30, sync=sync)
        st = our_stack(L, [20], device, b_dec)

        @torch.no_grad()
        def enc(st=st, L=L):  # pre-activations, TopK selection, values: what a training step runs
            pre = st.pre_acts(x)
            if cpu_topk.available() and pre.device.type == "cpu":
                return cpu_topk.segmented_topk(pre.reshape(BATCH, -1), L, [20], values=True)
            idx = st._topk_select(pre)
            return idx, pre.reshape(BATCH, -1).gather(1, idx).relu()

        t_enc = timeit(enc, reps=30, sync=sync)
        flops = 2 * BATCH * D_IN * L
        t_step = timeit(lambda st=st: st.train_step(next(it), 1.0, 1e-3), reps=10, sync=sync)
        peak[L] = (flops / t_mm / 1e9, flops / t_enc / 1e9)
        print(
            f"{L:7d}  {peak[L][0]:14.1f}  {peak[L][1]:21.1f}  {peak[L][1] / peak[L][0]:8.2f}  {BATCH / t_step:14.0f}"
        )

    # -- 2. one model, L600 K20: ours vs SAELens ----------------------------------------------------
    st = our_stack(600, [20], device, b_dec)
    t_ours1 = timeit(lambda: st.train_step(next(it), 1.0, 1e-3), reps=10, sync=sync)
    sl_step = saelens_model(600, 20, device, b_dec)
    t_sl1 = timeit(lambda: sl_step(next(it)), reps=10, sync=sync)
    print(
        f"\none model L600 K20, per epoch ({steps_per_epoch} steps): ours {t_ours1 * steps_per_epoch:.1f}s, "
        f"SAELens {t_sl1 * steps_per_epoch:.1f}s, ratio {t_sl1 / t_ours1:.2f}x"
    )

    # -- 3. the 42-model grid ------------------------------------------------------------------------
    stacks = [our_stack(L, KS, device, b_dec) for L in LATENTS]

    def grid_step():
        xb = next(it)
        for s in stacks:
            s.train_step(xb, 1.0, 1e-3)

    t_grid = timeit(grid_step, reps=args.grid_steps, warmup=1, sync=sync)
    enc_weights = [s.W_enc.detach().reshape(D_IN, -1).clone() for s in stacks]

    def grid_matmuls():  # the grid step's encoder matmuls alone: the floor a step is measured against
        for w in enc_weights:
            x @ w

    t_grid_mm = timeit(grid_matmuls, reps=max(10, args.grid_steps), sync=sync)
    ours_epoch = t_grid * steps_per_epoch
    sl_grid_step = 0.0
    for L in LATENTS:  # SAELens cost hardly depends on K (dense decoder): time K=20, count 7 models
        step = saelens_model(L, 20, device, b_dec)
        sl_grid_step += len(KS) * timeit(lambda step=step: step(next(it)), reps=4, warmup=1, sync=sync)
    sl_epoch = sl_grid_step * steps_per_epoch
    print(
        f"\n42-model grid (latents 100-600 x K 5-35) on {args.rows} x {D_IN}, per epoch, extrapolated from "
        f"{args.grid_steps} measured steps (ours) and 4 steps per latent size x 7 K (SAELens):\n"
        f"  ours {t_grid * 1e3:.0f} ms/step -> {ours_epoch:.0f}s/epoch ({ours_epoch / 60:.1f} min); "
        f"SAELens {sl_grid_step * 1e3:.0f} ms/step -> {sl_epoch:.0f}s/epoch ({sl_epoch / 60:.1f} min)\n"
        f"  epochs within 15 min: ours {900 / ours_epoch:.2f}, SAELens {900 / sl_epoch:.2f}\n"
        f"  one grid step = {t_grid / t_grid_mm:.2f}x its encoder matmuls alone ({t_grid_mm * 1e3:.0f} ms)"
    )
    streamed = stream_bench(args.stream_rows, args.stream_steps) if args.stream_rows else {}
    print(f"bench wall time {time.time() - t0:.0f}s, load avg {os.getloadavg()[0]:.1f}")
    print(
        f"peak_fraction={peak[600][1] / peak[600][0]:.3f} step_over_matmul={t_grid / t_grid_mm:.2f} "
        f"saelens_one_ratio={t_sl1 / t_ours1:.2f} saelens_ratio={sl_epoch / ours_epoch:.2f}"
        + (f" {stream_figures(streamed)}" if streamed else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
