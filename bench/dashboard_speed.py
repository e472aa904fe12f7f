"""Dashboard speed on a large synthetic workspace (issue 5): cold start, latent page warm,
steering update server-side, resident memory. Prints figures and ratios (not a timed test).

    python bench/dashboard_speed.py [--segments 1100000] [--dim 256] [--d-sae 600] [--k 20]

The workspace (bench/out/, git-ignored) is built once and reused: segments with speaker /
language / gender / class / split metadata (a small labelled `feature` split of ~2000 rows, as in
the paper's Tables I-II, the rest trains SAEs), structured random embeddings, one TopK SAE saved
with core.sae (random initialisation: speed does not depend on training), and the cached
artifacts the dashboard reads: core.sae.activations' codes, core.dashboard.browse's activation index, a stored
2-D map (random coordinates for the subsample: UMAP's own fit is a one-off, not a page cost).

Targets (issue 5): cold start <= 5 s with cached artifacts, latent page warm <= 200 ms, steering
update <= 50 ms server-side, resident memory <= 2 GB. Each figure is printed with its ratio to the
target and, where one exists, to a naive baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TARGETS = {"cold_start_s": 5.0, "latent_page_ms": 200.0, "steering_ms": 50.0, "rss_gb": 2.0}
MODEL = "topk-bench"


def build(root: Path, n: int, dim: int, d_sae: int, k: int) -> None:
    import pandas as pd

    from core.dashboard.browse import build_index
    from core.dashboard.projection import sample_rows, save_projection
    from core.sae import SAEConfig, create_sae
    from core.sae.checkpoint import save_sae
    from core.workspace.workspace import Workspace

    os.environ["VOXSAE_DATA"] = str(root.parent)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    n_spk = max(20, n // 10)
    spk = rng.integers(0, n_spk, n)
    feature_spk = np.isin(spk % 1000, (7, 8))  # 1/500 of the speakers: ~2200 labelled rows at 1.1M
    is_music = rng.random(n) < 0.1
    lang = np.where(spk % 2 == 0, "es", "en")
    gender = np.where((spk // 2) % 2 == 0, "female", "male")
    seg = pd.DataFrame(
        {
            "segment_id": np.char.add("s", np.arange(n).astype(str)),
            "source": np.char.add(np.char.add("call", (np.arange(n) // 100).astype(str)), ".wav"),
            "start_s": (np.arange(n) % 100) * 6.0,
            "end_s": (np.arange(n) % 100) * 6.0 + 5.0,
            "duration_s": 5.0,
            "speaker": np.char.add("spk", spk.astype(str)),
            "language": np.where(is_music, "none", lang),
            "gender": np.where(is_music, "none", gender),
            "class": np.where(is_music, "music", "voice"),
            "split": np.where(feature_spk, "feature", "sae"),
        }
    )
    del spk
    dirs = rng.standard_normal((4, dim)).astype(np.float32)
    # written in chunks to a .npy file with plain writes, then passed as a read-only memory map,
    # which Workspace.create checks, hashes and copies in row chunks: 10M x 192 (7.7 GB) is never
    # held in memory
    root.parent.mkdir(parents=True, exist_ok=True)
    src = root.parent / f".{root.name}-embeddings.npy"
    with open(src, "wb") as fh:
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
        np.lib.format.write_array_header_1_0(fh, {**header, "shape": (n, dim)})
        for a in range(0, n, 100_000):
            b = min(n, a + 100_000)
            chunk = 0.5 * rng.standard_normal((b - a, dim)).astype(np.float32)
            chunk += np.where((lang[a:b] == "es") & ~is_music[a:b], 1, 0)[:, None] * dirs[0]
            chunk += np.where(is_music[a:b], 1, 0)[:, None] * 2 * dirs[1]
            chunk += np.where(gender[a:b] == "female", 1, 0)[:, None] * 0.7 * dirs[2]
            fh.write(chunk.tobytes())
    x = np.load(src, mmap_mode="r")
    ws = Workspace.create(root, seg, x, embedder="imported", sample_rate=0, provenance={"command": "bench"})
    del x, seg
    src.unlink()
    print(
        f"  workspace {n:,} x {dim}: {time.perf_counter() - t0:.1f} s, peak RSS {peak_rss_gb():.2f} GB",
        flush=True,
    )
    t0 = time.perf_counter()
    sae = create_sae(SAEConfig(architecture="topk", d_in=dim, d_sae=d_sae, k=k))
    save_sae(sae, ws.models_dir / MODEL, metrics={"nmse": None, "l0": k, "dead_fraction": 0.0})
    build_index(ws, MODEL)
    print(
        f"  activation codes + browse index ({d_sae} latents, K={k}): {time.perf_counter() - t0:.1f} s, "
        f"peak RSS {peak_rss_gb():.2f} GB",
        flush=True,
    )
    rows = sample_rows(n)
    save_projection(ws, rows, rng.standard_normal((len(rows), 2)).astype(np.float32))
    build_nearest(ws)


def build_nearest(ws) -> None:
    """dashboard-cache's nearest-segment index and the server's segment table (core.dashboard.
    segments_table), each a no-op when a fresh one is stored."""
    from core.dashboard import nearest_index, segments_table

    segments_table.ensure(ws)
    t0 = time.perf_counter()
    built = nearest_index.ensure_index(ws)
    if built is not None and built.built:
        print(
            f"  nearest-segment index IVF{built.lists},SQ8: {time.perf_counter() - t0:.1f} s, "
            f"{built.path.stat().st_size / 2**30:.2f} GB file, peak RSS {peak_rss_gb():.2f} GB",
            flush=True,
        )


def peak_rss_gb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec. It counts file-backed pages of
    # memory maps too (the embeddings read through np.load(mmap_mode="r")), which the kernel can drop
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 2**20


CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
from streamlit.testing.v1 import AppTest


def mem():
    status = open("/proc/self/status").read()
    kb = lambda key: int(status.split(key + ":")[1].split()[0]) / 1024 / 1024
    return {"rss": kb("VmRSS"), "anon": kb("RssAnon"), "file": kb("RssFile"), "peak": kb("VmHWM")}


def open_page(key, **state):
    os.environ["VOXSAE_START_PAGE"] = key
    at = AppTest.from_file(sys.argv[1], default_timeout=600)
    for k, v in state.items():
        at.session_state[k] = v
    t = time.perf_counter()
    at.run()
    took = time.perf_counter() - t
    assert not at.exception, (key, [e.value for e in at.exception])
    return at, took


at, _ = open_page("latents", latent=int(sys.argv[2]))
cold = time.perf_counter() - t0
assert at.title[0].value.startswith("Latent"), at.title
warm = []
for _ in range(5):
    t = time.perf_counter(); at.run(); warm.append(time.perf_counter() - t)
st_at, steer_first = open_page("steering")
assert st_at.slider, ([e.value for e in st_at.error], [i.value for i in st_at.info])
steer_rerun = []
for v in (0.5, 1.0, 1.5, 2.0, 2.5):
    t = time.perf_counter(); st_at.slider(key="_w_steer_value").set_value(v).run(); steer_rerun.append(time.perf_counter() - t)
mem_latent_steering = mem()
pr_at, probe_first = open_page("probe")
try:  # a text box above core.dashboard.probe.SEGMENT_LIST_MAX segments, else a select box
    picker = pr_at.text_input(key="_w_probe_segment")
except KeyError:
    picker = pr_at.selectbox(key="_w_probe_segment")
t = time.perf_counter(); picker.set_value("s7").run(); probe_next = time.perf_counter() - t
assert not pr_at.exception and not pr_at.error, ([e.value for e in pr_at.exception], [e.value for e in pr_at.error])
first_open = {"latents": cold, "steering": steer_first, "probe": probe_first}
kept = [at, st_at, pr_at]  # every session stays open, as in a server that served them all
for key in ("overview", "labeling", "grid", "splitting", "continuous"):
    page_at, first_open[key] = open_page(key)
    kept.append(page_at)
print(json.dumps({"cold": cold, "warm": warm, "steer_first": steer_first, "steer_rerun": steer_rerun,
                  "mem_latent_steering": mem_latent_steering, "probe_first": probe_first,
                  "probe_next": probe_next, "first_open": first_open, "mem_all": mem()}))
"""


def real_server_cold_start(data_root: Path, workspace: str, latent: int) -> tuple[float, float] | None:
    """Seconds from `streamlit run` to a rendered latent page in headless Chromium, then a reload."""
    import socket
    import urllib.request

    from core.dashboard.chromium import CHROMIUM, launch

    if not Path(CHROMIUM).exists():
        print(f"(no {CHROMIUM}: real-server cold start not measured)")
        return None
    from playwright.sync_api import sync_playwright

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, VOXSAE_DATA=str(data_root), VOXSAE_WORKSPACE=workspace)
    env.pop("VOXSAE_START_PAGE", None)
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("streamlit")), "run", "app.py", "--server.port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                    break
                except OSError:
                    if time.perf_counter() - t0 > 120:
                        raise
                    time.sleep(0.05)
            page.goto(f"http://127.0.0.1:{port}/latents?latent={latent}")
            page.get_by_text("Top-activating segments").first.wait_for(timeout=120_000)
            cold = time.perf_counter() - t0
            t1 = time.perf_counter()
            page.reload()
            page.get_by_text("Top-activating segments").first.wait_for(timeout=120_000)
            warm = time.perf_counter() - t1
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            browser.close()
    return cold, warm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", "--segments", dest="rows", type=int, default=1_100_000, help="segments")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--d-sae", type=int, default=600)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--out", default=str(REPO / "bench" / "out"))
    args = ap.parse_args()
    name = f"dash-{args.rows}-{args.dim}-{args.d_sae}-{args.k}"
    root = Path(args.out) / name
    os.environ["VOXSAE_DATA"] = str(root.parent)
    os.environ["VOXSAE_WORKSPACE"] = name
    from core.dashboard.browse import decoder_directions, latent_page, load_index
    from core.workspace.workspace import Workspace

    print(
        f"load average {os.getloadavg()[0]:.2f}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(f"== dashboard speed: {args.rows:,} segments x {args.dim}, SAE {args.d_sae} latents K={args.k}")
    if not (root / "workspace.json").is_file() or load_index(Workspace.open(root), MODEL) is None:
        print("building the workspace and its cached artifacts (once):", flush=True)
        build(root, args.rows, args.dim, args.d_sae, args.k)
    ws = Workspace.open(root)
    build_nearest(ws)  # a workspace built before the bench built it
    from core.dashboard import segments_table

    segments_table.load(ws)  # the table as the server reads it (pages/common.open_ws)
    idx = load_index(ws, MODEL)
    live = idx.stats[idx.stats["count"] > 0]
    typical = int(live.iloc[(live["count"] - live["count"].median()).abs().argsort().iloc[0]]["latent"])

    # 1. cold start + warm page reruns + steering reruns + memory: a fresh process through AppTest
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO / "app.py"), str(typical)],
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS="2"),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if child.returncode != 0:
        print(child.stderr[-3000:])
        return 1
    fig = json.loads(child.stdout.strip().splitlines()[-1])
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import streamlit, pandas, numpy"], check=True)
    import_floor = time.perf_counter() - t

    # 2. latent page data in this process (server-side compute), vs a naive scan of the codes
    dec = decoder_directions(ws, MODEL)
    rng = np.random.default_rng(0)
    picks = rng.choice(live["latent"].to_numpy(), size=min(20, len(live)), replace=False)
    latent_page(ws, idx, typical, decoder=dec)  # first touch of the memory map
    page_ms = []
    for j in picks:
        t = time.perf_counter()
        latent_page(ws, idx, int(j), decoder=dec)
        page_ms.append(1000 * (time.perf_counter() - t))
    from core.sae.activations import sparse_codes

    codes, vals = sparse_codes(ws, MODEL)
    naive_ms = []
    for j in picks[:5]:
        t = time.perf_counter()
        hit = codes == int(j)
        r = np.flatnonzero(hit.any(axis=1))
        v = vals[hit]
        top = r[np.argsort(-v)[:10]]
        _ = ws.segments.iloc[top]
        np.histogram(v, bins=30)
        naive_ms.append(1000 * (time.perf_counter() - t))
    del codes, vals

    # 3. steering update (the fragment's server-side work), vs decoding every steered sample
    from core.dashboard import steering_view
    from core.dashboard.tasks import DEFAULT_TASKS

    task = DEFAULT_TASKS[0]  # language: es vs en
    t = time.perf_counter()
    session = steering_view.steering_session(ws, MODEL, task)
    session_s = time.perf_counter() - t
    latent = steering_view.default_latent(ws, MODEL, task) or typical
    steer_ms = []
    for a in np.linspace(-3, 3, 41):
        t = time.perf_counter()
        res = steering_view.steer_signed(session, latent, float(a))
        steering_view.steering_frames(res)
        steer_ms.append(1000 * (time.perf_counter() - t))
    naive_steer = []
    w, b = session.w_dec, session.b_dec
    for a in (0.5, 1.0, 1.5):
        t = time.perf_counter()
        z = session.z.copy()
        z[:, latent] = np.where(session.y, -a, a)
        rec = z @ w + b
        rn = rec / np.linalg.norm(rec, axis=1, keepdims=True)
        _ = rn @ (session.c_pos / np.linalg.norm(session.c_pos)) - rn @ (
            session.c_neg / np.linalg.norm(session.c_neg)
        )
        naive_steer.append(1000 * (time.perf_counter() - t))

    real = real_server_cold_start(root.parent, name, typical)

    def line(label, value, unit, target, baseline=None):
        text = f"{label:<44} {value:9.3f} {unit:<3} target {target:g} {unit} (ratio {value / target:.2f})"
        if baseline is not None:
            text += f"; naive baseline {baseline:.3f} {unit} (speed-up {baseline / value:.1f}x)"
        print(text)

    print(f"test set for steering: {len(session.y)} samples; session build (encode once) {session_s:.2f} s")
    line("cold start, AppTest (fresh process)", fig["cold"], "s", TARGETS["cold_start_s"])
    print(f"{'  of which python + streamlit/pandas imports':<44} {import_floor:9.3f} s")
    if real is not None:
        line("cold start, real server + Chromium", real[0], "s", TARGETS["cold_start_s"])
        print(f"{'  then the same latent page reloaded (warm)':<44} {1000 * real[1]:9.1f} ms")
    ms = {  # medians, milliseconds
        "page": float(np.median(page_ms)),
        "page naive": float(np.median(naive_ms)),
        "page rerun": 1000 * float(np.median(fig["warm"])),
        "steer": float(np.median(steer_ms)),
        "steer naive": float(np.median(naive_steer)),
        "steer rerun": 1000 * float(np.median(fig["steer_rerun"])),
    }
    page_target, steer_target = TARGETS["latent_page_ms"], TARGETS["steering_ms"]
    line("latent page data, warm (median)", ms["page"], "ms", page_target, ms["page naive"])
    print(f"{'  latent page data, warm (max of 20)':<44} {max(page_ms):9.3f} ms")
    line("latent page full rerun via AppTest (median)", ms["page rerun"], "ms", page_target)
    line("steering update server-side (median)", ms["steer"], "ms", steer_target, ms["steer naive"])
    print(f"{'  steering update (max of 41)':<44} {max(steer_ms):9.3f} ms")
    line("steering page rerun via AppTest (median)", ms["steer rerun"], "ms", steer_target)
    print(f"{'  steering page first open (encodes once)':<44} {fig['steer_first']:9.3f} s")
    ml, ma = fig["mem_latent_steering"], fig["mem_all"]
    line("resident memory after latent + steering", ml["rss"], "GB", TARGETS["rss_gb"])
    print(
        f"{'probe page: first open / next segment':<44} {fig['probe_first']:9.3f} s / {fig['probe_next']:.3f} s"
    )
    print("first open of each page: " + ", ".join(f"{k} {v:.2f} s" for k, v in fig["first_open"].items()))
    line("resident memory after every page", ma["rss"], "GB", TARGETS["rss_gb"])
    print(
        f"{'  of which anonymous / file-backed (maps)':<44} {ma['anon']:9.3f} GB / {ma['file']:.3f} GB; "
        f"peak {ma['peak']:.3f} GB"
    )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    figures = {
        "rows": args.rows,
        "dim": args.dim,
        "cold_start_s": f"{fig['cold']:.2f}",
        "cold_start_server_s": f"{real[0]:.2f}" if real is not None else "nan",
        "latent_page_ms": f"{ms['page']:.1f}",
        "latent_page_rerun_ms": f"{ms['page rerun']:.0f}",
        "steering_ms": f"{ms['steer']:.2f}",
        "steering_rerun_ms": f"{ms['steer rerun']:.0f}",
        "probe_first_s": f"{fig['probe_first']:.2f}",
        "probe_next_s": f"{fig['probe_next']:.2f}",
        "dashboard_rss_gb": f"{ma['rss']:.2f}",
        "dashboard_rss_anon_gb": f"{ma['anon']:.2f}",
        "dashboard_peak_rss_gb": f"{ma['peak']:.2f}",
        "load_avg": f"{os.getloadavg()[0]:.2f}",
    }
    print(" ".join(f"{k}={v}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
