"""Probe speed: a 10 s microphone recording's bytes (the 16 kHz WAV st.audio_input gives) to its
active latents and nearest segments, as the Probe a clip page computes them
(core.dashboard.probe.embed_recording + probe_embedding).

Prints the cold time (the first recording: the embedder's weights loaded, as in a fresh server)
and the warm median of 5 (every later recording), split into check+decode+segment, embed and
probe. Target: <= 2 s warm for a 10 s clip on the 2-core CPU.

    .venv/bin/python bench/probe_speed.py [--workspace demo] [--model M]

Without --workspace: data/demo when it is built, else the dashboard tests' small workspace built
in a temporary folder (its embeddings are synthetic; the embedder is the real resemblyzer).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

TARGET_S = 2.0
CLIP_S = 10.0


def recording_bytes(seconds: float = CLIP_S) -> bytes:
    """Speech-like sound (a gliding harmonic tone, syllable-rate envelope, pauses) as 16-bit WAV."""
    sr = 16_000
    t = np.arange(int(seconds * sr)) / sr
    f0 = 150 + 30 * np.sin(2 * np.pi * 0.6 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(h * phase) / h for h in range(1, 8)) * np.clip(np.sin(2 * np.pi * 3 * t), 0, None)
    x *= (t % 3.3) < 3.0  # a 0.3 s pause every 3.3 s (bridged, as pauses between words are)
    buf = io.BytesIO()
    sf.write(buf, (0.3 * x / np.abs(x).max()).astype(np.float32), sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def open_workspace(name: str | None):
    from core.workspace.workspace import Workspace

    if name:
        return Workspace.open(name)
    demo = Path(__file__).resolve().parent.parent / "data" / "demo"
    if (demo / "workspace.json").exists():
        return Workspace.open(demo)
    from dashboard_ws import build_workspace

    return build_workspace(Path(tempfile.mkdtemp(prefix="probe-bench-")), "dash", analyses=False)


def probe_once(ws, model: str, data: bytes, stats) -> dict:
    from core.dashboard import probe

    embedded = []
    real = probe.embed_pieces

    def timed_embed(ws_, pieces):
        t = time.perf_counter()
        out = real(ws_, pieces)
        embedded.append(time.perf_counter() - t)
        return out

    probe.embed_pieces = timed_embed
    try:
        t0 = time.perf_counter()
        clip = probe.embed_recording(ws, data)
        t1 = time.perf_counter()
        res = probe.probe_embedding(ws, model, clip.embedding, stats=stats)
        t2 = time.perf_counter()
    finally:
        probe.embed_pieces = real
    return {
        "total": t2 - t0,
        "embed": embedded[0],
        "decode_segment": t1 - t0 - embedded[0],
        "probe": t2 - t1,
        "pieces": len(clip.pieces),
        "active": len(res.latents),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace")
    parser.add_argument("--model")
    args = parser.parse_args()
    from core.dashboard.browse import load_index
    from core.sae.catalog import list_models

    ws = open_workspace(args.workspace)
    model = args.model or list_models(ws)[-1].name
    index = load_index(ws, model)
    stats = None if index is None else index.stats
    data = recording_bytes()
    cold = probe_once(ws, model, data, stats)
    warm = [probe_once(ws, model, data, stats) for _ in range(5)]
    med = {k: float(np.median([w[k] for w in warm])) for k in ("total", "embed", "decode_segment", "probe")}
    print(f"workspace {ws.name} ({len(ws):,} segments, {ws.embedder}), model {model}")
    print(f"{CLIP_S:g} s recording -> {cold['pieces']} piece(s) embedded, {cold['active']} active latents")
    print(f"cold (embedder loaded): {cold['total']:.2f} s")
    print(
        f"warm median of 5: {med['total']:.3f} s = check+decode+segment {med['decode_segment']:.3f} s "
        f"+ embed {med['embed']:.3f} s + probe {med['probe']:.3f} s"
    )
    ok = med["total"] <= TARGET_S
    print(
        f"probe_s={med['total']:.3f} cold_s={cold['total']:.2f} target<={TARGET_S:g} {'ok' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
