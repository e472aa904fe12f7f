"""Probing a clip: embed an uploaded file or a microphone recording (or take a catalogue
segment's embedding), then its active latents (with labels and associations) and its nearest
catalogue segments by cosine (core.dashboard.nearest_index: a vector index on big workspaces).

An upload (embed_upload) and a recording (embed_recording, the WAV st.audio_input gives) take one
path: the bytes are checked (type, size, length, decodable, not silence), the audio is cut into
its stretches of sound with the workspace's own segmentation settings (and passed through the
telephone channel where the workspace was ingested with --telephony), exactly as ingest cuts a
file, the pieces are embedded in one batch by the workspace's embedder, and their mean is the
clip's embedding (ClipEmbedding, with the pieces it was made of).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from core.atomic import write_failure
from core.constants import SAMPLE_RATE
from core.errors import InputError, NotFoundError, VoxSAEError
from core.workspace.workspace import COLUMN_SUFFIX

NEAREST_ADDED = ("row", "cosine")
"""Columns the nearest-segments table adds in front of the segment's own; a metadata column of the
same name is kept as `NAME (column)` (workspace.COLUMN_SUFFIX)."""
UPLOAD_TYPES = ("wav", "flac", "ogg", "oga", "opus", "mp3", "m4a", "aiff", "au")
"""Audio file types the probe page accepts (anything core.audio.read.load_audio decodes)."""
MAX_UPLOAD_BYTES = 25 * 2**20
"""Largest upload embed_upload takes: .streamlit/config.toml's server.maxUploadSize (25 MB), so a
caller that bypasses the server's limit is held to the same one."""
MIN_UPLOAD_S = 0.5
"""Shortest clip probed: the embedder pads anything shorter into a meaningless embedding."""
MAX_UPLOAD_S = 600.0
"""Longest clip probed (10 min): an upload is a clip to compare with segments, not a recording."""
RECORDING = "the recording"
"""How error messages name a microphone recording (its file name is the browser's timestamp)."""


@dataclass
class ClipEmbedding:
    embedding: np.ndarray  # float32 [dim]: the mean of the pieces' embeddings
    pieces: list  # core.audio.segmentation.Region: the stretches of sound embedded, in the clip's seconds
    seconds: float  # the clip's length


@dataclass
class ProbeResult:
    embedding: np.ndarray  # float32 [dim]
    latents: pd.DataFrame  # latent, activation, label, association
    nearest: pd.DataFrame  # segment rows + cosine


# -- the clip's embedding -----------------------------------------------------------------------
def embed_clip(ws, audio: np.ndarray) -> np.ndarray:
    """Embed 16 kHz mono audio with the workspace's own embedder -> float32 [dim]."""
    return embed_pieces(ws, [audio])[0]


def embed_pieces(ws, pieces: list[np.ndarray]) -> np.ndarray:
    """Embed pieces of 16 kHz mono audio with the workspace's embedder -> float32 [n, dim].

    Through ingest's own entry point (core.embedders.embed_segments), in this process (jobs=1:
    no worker pool in the dashboard server) with one torch thread, which on a shared 2-core CPU is
    as fast as two and does not collapse when other sessions hold a core."""
    from core.embedders import embed_segments

    if ws.embedder not in _known_embedders():
        raise InputError(
            f"workspace {ws.name} was made with embedder {ws.embedder!r}, which cannot embed new audio here"
        )
    out = embed_segments(ws.embedder, list(pieces), jobs=1, progress=False)
    if out.shape[1] != ws.dim:
        raise InputError(f"embedder {ws.embedder} gives {out.shape[1]}-d embeddings, workspace has {ws.dim}")
    return np.asarray(out, dtype=np.float32)


def warm_embedder(ws) -> None:
    """Load the workspace's embedder into this process's cache by embedding one second of quiet
    noise through embed_pieces (the very call a recording takes, so the same cached embedder), so
    the first recording is embedded as fast as the next: the probe page calls it while the user
    records."""
    if ws.embedder in _known_embedders():
        embed_pieces(ws, [0.01 * np.random.default_rng(0).standard_normal(SAMPLE_RATE)])


def _known_embedders() -> set[str]:
    from core.embedders import EMBEDDERS

    return set(EMBEDDERS)


def upload_name(name: str) -> str:
    """An upload's file name as an error message may show it: no folders, no control characters."""
    shown = "".join(c if c.isprintable() else "?" for c in Path(str(name)).name)
    return shown if len(shown) <= 120 else shown[:117] + "..."


def embed_upload(ws, name: str, data: bytes) -> ClipEmbedding:
    """Embed an uploaded audio file (its bytes; `name` gives the format): see embed_bytes. A type
    not in UPLOAD_TYPES is refused naming the upload."""
    shown = upload_name(name)
    suffix = Path(str(name)).suffix.lower().lstrip(".")
    if suffix not in UPLOAD_TYPES:
        raise InputError(f"{shown}: not an audio file type the probe reads ({', '.join(UPLOAD_TYPES)})")
    return embed_bytes(ws, data, suffix, shown)


def embed_recording(ws, data: bytes) -> ClipEmbedding:
    """Embed a microphone recording (the WAV bytes st.audio_input gives): see embed_bytes; errors
    name it RECORDING."""
    return embed_bytes(ws, data, "wav", RECORDING)


def embed_bytes(ws, data: bytes, suffix: str, shown: str) -> ClipEmbedding:
    """Decode, check, segment and embed a clip's bytes (module docstring).

    Refused with one InputError naming the clip as `shown` (never the temporary file it is
    decoded from): an empty or oversized file (MAX_UPLOAD_BYTES), a header that says 0 Hz,
    anything load_audio cannot decode (corrupt, truncated, all zeros, NaN samples), audio shorter
    than MIN_UPLOAD_S or longer than MAX_UPLOAD_S (checked from the header before decoding where
    the format has one, so a small file cannot expand to hours of samples), and audio with no
    sound the segmentation finds (silence, or a hiss under its floor).
    """
    from core.audio.read import cut, load_audio

    if not data:
        raise InputError(f"{shown}: empty file (0 bytes)")
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(
            f"{shown}: {len(data) / 2**20:.1f} MB, more than the {MAX_UPLOAD_BYTES // 2**20} MB an upload may have"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload.{suffix}"
        try:
            path.write_bytes(data)
        except OSError as exc:
            raise write_failure(path, exc) from None
        try:
            _check_header(path, shown)
            audio = load_audio(path, max_seconds=MAX_UPLOAD_S)
        except VoxSAEError as exc:
            raise type(exc)(str(exc).replace(str(path), shown)) from None
        except ValueError as exc:  # a decoder failing past load_audio's checks (a 0 Hz header)
            raise InputError(f"{shown}: unreadable or corrupt audio ({exc})") from None
    seconds = len(audio) / SAMPLE_RATE
    _check_duration(seconds, shown)
    pieces = clip_pieces(ws, audio, shown)
    if ws.info.provenance.get("telephony"):  # as ingest does: the channel after segmentation
        from core.audio.channel import telephone_channel

        audio = telephone_channel(audio, SAMPLE_RATE)
    embs = embed_pieces(ws, [cut(audio, SAMPLE_RATE, r.start_s, r.end_s) for r in pieces])
    return ClipEmbedding(embedding=mean_embedding(embs), pieces=pieces, seconds=seconds)


def workspace_segmentation(ws):
    """The SegmentationConfig the workspace's segments were cut with (ingest and demo-corpus record
    it in the provenance), the defaults for a workspace that does not say (import-embeddings)."""
    from core.audio.segmentation import SegmentationConfig

    prov = ws.info.provenance
    stored = prov.get("segmentation") or (prov.get("settings") or {}).get("segmentation")
    if not isinstance(stored, dict):
        return SegmentationConfig()
    fields = set(SegmentationConfig.__dataclass_fields__)
    return SegmentationConfig(**{k: v for k, v in stored.items() if k in fields})


def clip_pieces(ws, audio: np.ndarray, shown: str) -> list:
    """The stretches of sound of a clip to embed: ingest's 4-8 s segments of it (the workspace's
    settings); where ingest would keep none (no stretch that long), its whole span of sound, since a
    probe has this one clip to show. Silence is refused with one InputError naming `shown`."""
    from core.audio.segmentation import Region, find_nonsilent, split_region

    cfg = workspace_segmentation(ws)
    regions = find_nonsilent(audio, SAMPLE_RATE, cfg)
    if not regions:
        raise InputError(
            f"{shown}: silence: no sound found (nothing above {cfg.floor_db:g} dBFS, or only clicks "
            f"shorter than {cfg.min_sound_s:g} s); record or upload speech or music"
        )
    pieces = [piece for region in regions for piece in split_region(region, cfg)]
    if not pieces:
        span = Region(regions[0].start_s, regions[-1].end_s)
        if span.duration_s < MIN_UPLOAD_S:
            raise InputError(
                f"{shown}: only {span.duration_s:.2f} s of sound; a probed clip needs at least {MIN_UPLOAD_S:g} s"
            )
        pieces = [span]
    return pieces


def mean_embedding(embs: np.ndarray) -> np.ndarray:
    """The pieces' mean, scaled to their mean norm (a mean of unit-norm speaker embeddings is
    shorter than any of them; the SAE was trained on single segments' embeddings)."""
    embs = np.asarray(embs, dtype=np.float32)
    mean = embs.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    target = float(np.linalg.norm(embs, axis=1).mean())
    return (mean * (target / norm) if norm > 1e-12 else mean).astype(np.float32)


def _check_header(path: Path, shown: str) -> None:
    """Refuse from the header alone (before decoding) a rate no audio has or a clip past
    MAX_UPLOAD_S. A stream whose header gives no length is held to MAX_UPLOAD_S while it is
    decoded (load_audio's max_seconds)."""
    from core.audio.read import UNKNOWN_FRAMES, check_rate

    try:
        info = sf.info(str(path))
    except RuntimeError:  # not a format libsndfile opens: load_audio tries the others
        return
    check_rate(path, info.samplerate)
    if info.frames < UNKNOWN_FRAMES:
        _check_duration(info.frames / info.samplerate, shown, min_s=0.0)


def _check_duration(seconds: float, shown: str, *, min_s: float = MIN_UPLOAD_S) -> None:
    if seconds > MAX_UPLOAD_S:
        raise InputError(
            f"{shown}: {seconds / 60:.1f} min of audio; a probed clip may be at most {MAX_UPLOAD_S / 60:g} min"
        )
    if seconds < min_s:
        raise InputError(f"{shown}: {seconds:.2f} s of audio; a probed clip needs at least {min_s:g} s")


# -- nearest catalogue segments -----------------------------------------------------------------
SEGMENT_LIST_MAX = 100_000
"""Up to this many segments the page lists them in a select box; above it, a text box takes the
segment id (a select box sends every id to the browser on each run: 10M of them is ~100 MB)."""


def segment_choices(ws) -> pd.Series | None:
    """The segment ids the page's select box lists, or None when the workspace has more than
    SEGMENT_LIST_MAX segments (the page then asks for an id)."""
    return ws.segments["segment_id"] if len(ws) <= SEGMENT_LIST_MAX else None


def known_segment(ws, segment_id) -> bool:
    """Whether `segment_id` is one of the workspace's segments (one lookup, not a set of all ids)."""
    from core.dashboard.playback import segment_position

    try:
        segment_position(ws, str(segment_id))
    except NotFoundError:
        return False
    return True


def nearest_rows(
    ws, query: np.ndarray, k: int, exclude_row: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cosines) of the k catalogue segments nearest to `query` by cosine, best first: the
    workspace's vector index where it has one, brute force below its row threshold
    (core.dashboard.nearest_index)."""
    from core.dashboard.nearest_index import nearest_rows as indexed_nearest_rows

    return indexed_nearest_rows(ws, query, k, exclude_row)


# -- the probe ----------------------------------------------------------------------------------
def probe_embedding(
    ws,
    model: str,
    embedding: np.ndarray,
    *,
    labels: dict | None = None,
    stats: pd.DataFrame | None = None,
    n_nearest: int = 8,
    exclude_row: int | None = None,
) -> ProbeResult:
    """Active latents (with labels and associations) and nearest catalogue segments of one embedding."""
    from core.dashboard.browse import label_names
    from core.sae.activations import encode_array
    from core.sae.catalog import open_model

    e = np.asarray(embedding, dtype=np.float32).reshape(1, -1)
    if e.shape[1] != ws.dim:
        raise InputError(f"embedding of dim {e.shape[1]}, workspace {ws.name} has {ws.dim}")
    z = np.asarray(encode_array(open_model(ws, model), e), dtype=np.float32)[0]
    active = np.flatnonzero(z > 0)
    active = active[np.argsort(-z[active])]
    lat = pd.DataFrame(
        {
            "latent": active.astype(np.int64),
            "activation": z[active].astype(float),
            "label": label_names(labels, active),
        }
    )
    if stats is not None and "association" in stats.columns:
        lat["association"] = stats["association"].to_numpy()[active]
        lat["density"] = stats["density"].to_numpy()[active]
    near, near_cos = nearest_rows(ws, e[0], n_nearest, exclude_row)
    nearest = ws.segments.iloc[near].reset_index(drop=True)
    nearest = nearest.rename(columns={c: c + COLUMN_SUFFIX for c in NEAREST_ADDED if c in nearest.columns})
    nearest.insert(0, "cosine", near_cos)
    nearest.insert(0, "row", near.astype(np.int64))
    return ProbeResult(embedding=e[0], latents=lat, nearest=nearest)


def probe_segment(ws, model: str, segment_id: str, **kwargs) -> ProbeResult:
    """probe_embedding of a catalogue segment's stored embedding; the segment itself is not
    among its nearest."""
    from core.dashboard.playback import segment_position

    row = segment_position(ws, segment_id)
    return probe_embedding(ws, model, ws.embeddings[row], exclude_row=row, **kwargs)


NEAREST_HIDDEN = ("row", "source", "start_s", "end_s", "duration_s")


def nearest_caption(row: pd.Series) -> str:
    """One line for a nearest segment: its cosine, then its non-empty metadata."""
    from core.dashboard.browse import metadata_parts

    columns = [c for c in row.index if c not in (*NEAREST_HIDDEN, "cosine")]
    return " · ".join([f"cosine: `{row['cosine']:.3f}`", *metadata_parts(row, columns)])


def pieces_caption(clip: ClipEmbedding) -> str:
    """One line: what of the clip was embedded (its stretches of sound, as ingest would cut it)."""
    spans = ", ".join(f"{r.start_s:.1f}-{r.end_s:.1f} s" for r in clip.pieces)
    n = len(clip.pieces)
    if n == 1:
        return f"{clip.seconds:.1f} s clip: its sound ({spans}) embedded and probed"
    return f"{clip.seconds:.1f} s clip: {n} stretches of sound embedded ({spans}), their mean probed"


def active_summary(latents: pd.DataFrame, limit: int = 12) -> str:
    """One line naming the active latents, strongest first, with their label or association:
    'Active: **5** (Spanish) · **12** (class=music) · 3'."""
    parts = []
    for _, r in latents.head(limit).iterrows():
        name = r.get("label") or r.get("association") or ""
        parts.append(f"**{int(r['latent'])}**" + (f" ({name})" if name else ""))
    more = len(latents) - limit
    return "Active: " + " · ".join(parts) + (f" · and {more} more" if more > 0 else "")
