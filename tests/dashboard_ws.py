"""A small, complete workspace for the dashboard tests (built in seconds, no network, no weights).

Synthetic 256-d embeddings with structure (language, class, gender and speaker directions), a few
short WAVs under the workspace's audio/ folder that the segments are cut from, a tiny grid of TopK
SAEs trained with core.training.trainer, the default analyses (identification/grid, splitting,
suggestions), the browse index of every model and a stored 2-D projection (random, so the tests do
not pay for numba's compile of UMAP).

Also `DashboardServer`, a real `streamlit run app.py` on 127.0.0.1 (tests/pages/test_browser.py,
bench/dashboard_load.py), and the bad uploads and escaping sources the dashboard must refuse
(`hostile_uploads`, `ingested_with_escape`), shared by tests/dashboard and tests/hostile.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

DIM = 256
SR = 16_000
N_SOURCES = 6
SOURCE_S = 24.0
SEG_S = 2.0


def _tone(seed: int, seconds: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f = 150 + 40 * seed
    return (0.3 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def build_segments_and_embeddings(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = []
    # 16 voice speakers (8 train the SAEs, 8 are the labelled feature set) x 14 segments, + music
    for s in range(16):
        lang = "es" if s % 2 == 0 else "en"
        gender = "female" if (s // 2) % 2 == 0 else "male"
        for _j in range(14):
            rows.append(
                dict(
                    speaker=f"spk{s:02d}",
                    language=lang,
                    gender=gender,
                    **{"class": "voice"},
                    split="sae" if s < 8 else "feature",
                )
            )
    for m in range(8):
        for _ in range(8):
            rows.append(
                dict(
                    speaker=f"music{m}",
                    language="",
                    gender="",
                    **{"class": "music"},
                    split="sae" if m < 4 else "feature",
                )
            )
    seg = pd.DataFrame(rows)
    n = len(seg)
    src = np.arange(n) % N_SOURCES
    start = (np.arange(n) // N_SOURCES) % int(SOURCE_S / SEG_S) * SEG_S
    seg.insert(0, "segment_id", [f"seg{i:04d}" for i in range(n)])
    seg.insert(1, "source", [f"call{k}.wav" for k in src])
    seg.insert(2, "start_s", start)
    seg.insert(3, "end_s", start + SEG_S)
    seg.insert(4, "duration_s", SEG_S)
    dirs = rng.standard_normal((6, DIM)).astype(np.float32)
    spk_dirs = {s: rng.standard_normal(DIM).astype(np.float32) for s in seg["speaker"].unique()}
    x = 0.3 * rng.standard_normal((n, DIM)).astype(np.float32)
    x += np.where(seg["language"].eq("es").to_numpy()[:, None], dirs[0], 0)
    x += np.where(seg["language"].eq("en").to_numpy()[:, None], dirs[1], 0)
    x += np.where(seg["class"].eq("music").to_numpy()[:, None], 2 * dirs[2], 0)
    x += np.where(seg["gender"].eq("female").to_numpy()[:, None], 0.7 * dirs[3], 0)
    x += 0.5 * np.stack([spk_dirs[s] for s in seg["speaker"]])
    return seg, x.astype(np.float32)


def build_workspace(
    data_root: Path, name: str = "dash", *, analyses: bool = True, latents=(16, 32), ks=(2, 4)
):
    """Create data_root/name with audio, models (the latents x ks grid), analyses, browse indexes
    and a projection."""
    os.environ["VOXSAE_DATA"] = str(data_root)
    from core.audio.read import save_wav
    from core.dashboard.browse import build_index
    from core.dashboard.projection import save_projection
    from core.sae.catalog import list_models
    from core.training.config import TrainConfig
    from core.training.grid import train_grid
    from core.workspace.workspace import Workspace

    seg, x = build_segments_and_embeddings()
    ws = Workspace.create(
        data_root / name, seg, x, embedder="resemblyzer", sample_rate=SR, provenance={"command": "tests"}
    )
    for k in range(N_SOURCES):
        save_wav(ws.audio_dir / f"call{k}.wav", _tone(k, SOURCE_S), SR)
    train_grid(ws, TrainConfig(latents=tuple(latents), ks=tuple(ks), epochs=2, batch_size=64), progress=False)
    for m in list_models(ws):
        build_index(ws, m.name)
    rng = np.random.default_rng(1)
    save_projection(ws, np.arange(len(seg)), rng.standard_normal((len(seg), 2)))
    if analyses:
        from core.analysis.grid import compute_grid
        from core.analysis.splitting import compute_splitting
        from core.analysis.suggestions import compute_suggestions

        compute_grid(ws, "language", "es", ["en"])
        compute_grid(ws, "class", "music", ["voice"])
        compute_splitting(ws, "language", "es", ["en"], subgroup="gender")
        for m in list_models(ws):
            compute_suggestions(ws, m.name)
    return Workspace.open(data_root / name)


# -- clips and bad uploads ----------------------------------------------------------------------
def wav_of(audio, sr: int = SR, subtype: str = "PCM_16") -> bytes:
    """`audio` as the bytes of a WAV file."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, np.float32), sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def tone(seconds: float, sr: int = SR) -> np.ndarray:
    """A 220 Hz tone at 0.3 peak."""
    return 0.3 * np.sin(2 * np.pi * 220 * np.arange(int(seconds * sr)) / sr)


def zero_hz_wav(n_samples: int = 1000) -> bytes:
    """A PCM WAV whose header says 0 Hz."""
    import struct

    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 0, 0, 2, 16)
    data = b"data" + struct.pack("<I", 2 * n_samples) + b"\x01\x02" * n_samples
    return b"RIFF" + struct.pack("<I", 4 + len(fmt) + len(data)) + b"WAVE" + fmt + data


def hostile_uploads() -> list[tuple[str, bytes, str]]:
    """(file name, bytes, what the refusal says) for every kind of bad upload."""
    rng = np.random.default_rng(0)
    return [
        ("empty.wav", b"", "empty file (0 bytes)"),
        ("noise.wav", rng.bytes(5000), "unreadable or corrupt audio"),
        ("noise.mp3", rng.bytes(5000), "unreadable or corrupt audio"),
        ("notes.wav", b"a text file, not audio\n" * 50, "unreadable or corrupt audio"),
        ("header-only.wav", wav_of(np.zeros(0)), "empty audio"),
        ("silent.wav", wav_of(np.zeros(32_000)), "all silence"),
        ("nan.wav", wav_of(np.full(16_000, np.nan), subtype="FLOAT"), "NaN or inf"),
        (
            "zero-hz.wav",
            zero_hz_wav(16_000),
            "corrupt audio header (sample rate 0 Hz; audio is 4000-768000 Hz)",
        ),
        ("click.wav", wav_of(tone(0.1)), "0.10 s of audio; a probed clip needs at least 0.5 s"),
        ("notes.txt", b"hello", "not an audio file type the probe reads"),
        ("no-extension", wav_of(tone(1.0)), "not an audio file type the probe reads"),
        ("script.wav.exe", wav_of(tone(1.0)), "not an audio file type"),
    ]


def ingested_with_escape(root: Path, calls: Path, outside: Path):
    """A workspace at `root` as ingest records one (provenance['audio_root'] = `calls`) whose table
    names calls/a.wav (segment 'a', 0.25 throughout) and `outside` through ../ (segment 'escape'),
    as a workspace ingested before ingest checked its metadata could. Writes both WAVs."""
    from core.audio.read import save_wav
    from core.workspace.workspace import Workspace

    save_wav(calls / "a.wav", np.full(SR, 0.25, np.float32), SR)
    save_wav(outside, np.full(SR, 0.5, np.float32), SR)
    escape = os.path.relpath(outside, calls)
    seg = pd.DataFrame(
        {"segment_id": ["a", "escape"], "source": ["a.wav", escape], "start_s": 0.0, "end_s": 1.0}
    )
    seg["duration_s"] = 1.0
    provenance = {"command": "ingest", "audio_root": str(calls)}
    return Workspace.create(
        root, seg, np.ones((2, 4), np.float32), embedder="resemblyzer", sample_rate=SR, provenance=provenance
    )


# -- a real server --------------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class DashboardServer:
    """`streamlit run app.py` on 127.0.0.1 at a free port, showing `data_root` (default workspace
    `workspace`); its output goes to `log`. `start` spawns it, `wait_ready` waits for its health
    check; as a context manager it does both and stops it at the end."""

    def __init__(self, data_root: Path, log: Path, workspace: str = "dash"):
        self.data_root, self.log, self.workspace = Path(data_root), Path(log), workspace
        self.port, self.proc = free_port(), None

    def start(self) -> DashboardServer:
        """Spawn the server (it reads the workspace only when the first session runs)."""
        env = dict(
            os.environ, VOXSAE_DATA=str(self.data_root), VOXSAE_WORKSPACE=self.workspace, OMP_NUM_THREADS="1"
        )
        env.pop("VOXSAE_START_PAGE", None)
        cmd = [str(Path(sys.executable).with_name("streamlit")), "run", "app.py"]
        cmd += ["--server.address", HOST, "--server.port", str(self.port), "--server.headless", "true"]
        with open(self.log, "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout_s: float = 90.0) -> DashboardServer:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.proc.poll() is None:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.url("_stcore/health"), timeout=2) as r,
            ):
                if r.status == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"streamlit did not start; its log ({self.log}):\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> DashboardServer:
        if self.proc is None:
            self.start()
        return self.wait_ready()

    def __exit__(self, *exc) -> None:
        self.stop()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"

    def rss_mb(self) -> float:
        """Resident memory of the server process now (MB, /proc/PID/status)."""
        with open(f"/proc/{self.proc.pid}/status") as fh:
            kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        return kb / 1024


def small_workspace(root, embeddings: np.ndarray, **columns):
    """Workspace at `root`: one segment s0, s1, ... (0-1 s of x.wav) per embedding row, with
    `columns` as metadata (core.dashboard's tests, tests/hostile)."""
    from core.workspace.workspace import Workspace

    n = len(embeddings)
    seg = pd.DataFrame(
        {
            "segment_id": [f"s{i}" for i in range(n)],
            "source": "x.wav",
            "start_s": 0.0,
            "end_s": 1.0,
            "duration_s": 1.0,
            **columns,
        }
    )
    return Workspace.create(root, seg, np.asarray(embeddings, np.float32), embedder="x", sample_rate=0)
