"""Audio for the dashboard: a catalogue segment cut server-side from its source, as WAV bytes.

Only segments listed in the workspace's segment table are served: the caller names a
segment_id, never a path, and the source file is resolved by `Workspace.source_path` from the
catalogue row, which refuses (and logs) a source that resolves outside the audio folder recorded at
ingest or the workspace's own audio/ folder: `../x.wav`, an absolute path elsewhere, a symlink out. Only the needed frames are read from the source (soundfile seeks), so a long call
recording is not decoded in full to play six seconds of it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import soundfile as sf

from core.audio.read import cut, load_audio, resample, to_mono, wav_bytes
from core.constants import SAMPLE_RATE
from core.errors import InputError, NotFoundError

MAX_CLIP_S = 60.0
"""Longest clip served (a catalogue row longer than this is truncated)."""


def segment_position(ws, segment_id: str) -> int:
    """Row of `segment_id` in the catalogue (and embeddings); NotFoundError when it is not listed."""
    from core.dashboard import segments_table

    key = str(segment_id)
    pos = segments_table.find(ws, key)  # the server's table: binary search over its id order
    if pos is None:
        pos = int(_segment_index(ws).get_indexer([key])[0])
    if pos < 0:
        shown = key if len(key) <= 80 else key[:77] + "..."
        raise NotFoundError(f"workspace {ws.name}: no segment {shown!r} in the catalogue")
    return pos


def segment_row(ws, segment_id: str) -> pd.Series:
    """The catalogue row of `segment_id`; NotFoundError when the workspace does not list it."""
    return ws.segments.iloc[segment_position(ws, segment_id)]


def _segment_index(ws) -> pd.Index:
    cached = getattr(ws, "_voxsae_segment_index", None)
    if cached is None:
        cached = pd.Index(ws.segments["segment_id"].astype(str))
        ws._voxsae_segment_index = cached
    return cached


def segment_audio(ws, segment_id: str, *, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """(float32 mono samples, rate) of a catalogue segment, cut start_s..end_s from its source."""
    row = segment_row(ws, segment_id)
    try:
        path = ws.source_path(str(row["source"]))
    except InputError as exc:  # outside the audio folders: refused (and logged) by source_path
        raise InputError(f"audio of segment {segment_id!r} not served: {exc}") from None
    if path is None:
        raise NotFoundError(
            f"workspace {ws.name}: audio of segment {segment_id!r} is not available "
            f"(source {row['source']!r} not found)"
        )
    start_s = float(row["start_s"]) if pd.notna(row["start_s"]) else 0.0
    end_s = float(row["end_s"]) if pd.notna(row["end_s"]) else start_s + MAX_CLIP_S
    end_s = min(end_s, start_s + MAX_CLIP_S)
    if end_s <= start_s:
        raise InputError(f"workspace {ws.name}: segment {segment_id!r} has an empty time range")
    try:
        info = sf.info(str(path))
    except RuntimeError:  # a format libsndfile cannot open (e.g. m4a): decode it all below
        info = None
    if info is not None and info.samplerate > 0:  # read only the needed frames
        sr = int(info.samplerate)
        start = max(int(round(start_s * sr)), 0)
        stop = min(int(round(end_s * sr)), int(info.frames))
        audio, duration = np.zeros(0, np.float32), info.frames / sr
        if stop > start:
            try:
                data, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
            except RuntimeError as exc:
                raise InputError(f"{path}: unreadable or corrupt audio ({exc})") from None
            audio = to_mono(data)
    else:
        sr = SAMPLE_RATE
        try:
            full = load_audio(path, sr)
        except ValueError as exc:  # a decoder failing past load_audio's checks (a 0 Hz header)
            raise InputError(f"{path}: unreadable or corrupt audio ({exc})") from None
        audio, duration = cut(full, sr, start_s, end_s), len(full) / sr
    if audio.size == 0:
        raise InputError(
            f"{path}: segment {segment_id!r} ({start_s:.2f}-{end_s:.2f} s) lies outside the audio "
            f"(0-{duration:.2f} s)"
        )
    if sample_rate and sample_rate != sr:
        audio, sr = resample(audio, sr, sample_rate), sample_rate
    return audio, sr


def segment_wav(ws, segment_id: str) -> bytes:
    """WAV (16-bit PCM) bytes of a catalogue segment, ready for st.audio."""
    audio, sr = segment_audio(ws, segment_id)
    return wav_bytes(audio, sr)
