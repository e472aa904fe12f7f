"""A small, complete workspace for the dashboard tests (built in seconds, no network, no weights).

Synthetic 256-d embeddings with structure (language, class, gender and speaker directions), a few
short WAVs under the workspace's audio/ folder that the segments are cut from, a tiny grid of TopK
SAEs trained with core.training.trainer, the default analyses (identification/grid, splitting,
suggestions), the browse index of every model and a stored 2-D projection (random, so the tests do
not pay for numba's compile of UMAP).

Also the bad uploads the probe page must refuse (`hostile_uploads`), shared by tests/dashboard and
tests/hostile.
"""

from __future__ import annotations

import os
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
        ("zero-hz.wav", zero_hz_wav(16_000), "unreadable or corrupt audio (Sample rate should be over 0)"),
        ("click.wav", wav_of(tone(0.1)), "0.10 s of audio; a probed clip needs at least 0.5 s"),
        ("notes.txt", b"hello", "not an audio file type the probe reads"),
        ("no-extension", wav_of(tone(1.0)), "not an audio file type the probe reads"),
        ("script.wav.exe", wav_of(tone(1.0)), "not an audio file type"),
    ]
