"""Every on-disk name and shared default in one place (SAELens keeps its file names the same way).

The workspace layout is a contract (see README "Workspace on disk"): other tools and users'
scripts read these files, so change a name here only with a migration.
"""

from __future__ import annotations

import os
from pathlib import Path

# --- workspace layout -------------------------------------------------------------------
WORKSPACE_JSON = "workspace.json"
SEGMENTS_PARQUET = "segments.parquet"
EMBEDDINGS_NPY = "embeddings.npy"
WINDOWS_NPY = "windows.npy"  # float32 [W, dim]: sub-segment window embeddings (optional)
WINDOW_SEGMENTS_NPY = "window_segments.npy"  # int64 [W]: the segment row of each window
MODELS_DIR = "models"
ANALYSES_DIR = "analyses"
LABELS_SQLITE = "labels.sqlite"
CACHE_DIR = "cache"  # derived, recomputable artefacts (UMAP, per-model activations, ...)
AUDIO_DIR = "audio"  # audio a workspace owns (the demo corpus's synthesised calls)
NEW_CORPUS_DIR = ".new-corpus"  # a committed replacement of the corpus files, moving into place

# --- SAE checkpoint (SAELens file names) ------------------------------------------------
SAE_CFG_JSON = "cfg.json"
SAE_WEIGHTS_SAFETENSORS = "sae_weights.safetensors"
SAE_METRICS_JSON = "metrics.json"
TRAINING_STATE = "training_state.safetensors"  # optimiser + progress, for resume
TRAINING_DIR = "training"  # cache/training/<run key>-training_state.safetensors (resumable grid runs)
ACTIVATIONS_DIR = "activations"  # cache/activations/<model>-<fingerprint>-<weights sha>.npz (sparse codes)

# --- workspace format version, written into workspace.json --------------------------------
WORKSPACE_FORMAT_VERSION = 1

# --- audio -----------------------------------------------------------------------------
SAMPLE_RATE = 16_000  # every embedder here consumes 16 kHz mono

# --- segment table columns ----------------------------------------------------------------
SEGMENT_BASE_COLUMNS = ("segment_id", "source", "start_s", "end_s", "duration_s")
KNOWN_ATTRIBUTES = ("speaker", "language", "gender", "class", "split")
# measured from each segment's audio at ingest and demo-corpus (core/audio/attributes.py), in this order
MEASURED_ATTRIBUTES = (
    "f0_median_hz",  # median F0 of the voiced frames (Hz)
    "f0_range_hz",  # F0 range of the voiced frames (Hz, 95th minus 5th percentile)
    "loudness_dbfs",  # RMS level of the non-silent part (dBFS)
    "speech_rate",  # syllable nuclei per second of speech
    "snr_db",  # signal-to-noise estimate (dB)
    "voiced_fraction",  # share of frames that are voiced (0-1)
)
SPLIT_SAE = "sae"
SPLIT_FEATURE = "feature"

# --- defaults ----------------------------------------------------------------------------
DEFAULT_WORKSPACE = "demo"
DEFAULT_EMBEDDER = "resemblyzer"


def data_root() -> Path:
    """Folder that holds the workspaces: $VOXSAE_DATA, else data/ beside core/."""
    env = os.environ.get("VOXSAE_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (Path(__file__).resolve().parent.parent / "data").resolve()


# --- analyses/ layout (core/features.py, identification.py, grid.py, ... ) -----------------
FEATURES_SUBDIR = "features"  # analyses/features/<attr>=<pos>_vs_<neg>.json: saved train/test split
IDENTIFICATION_SUBDIR = "identification"  # analyses/identification/<key>.json
GRID_SUBDIR = "grid"  # analyses/grid/<key>.parquet
SPLITTING_SUBDIR = "splitting"  # analyses/splitting/<key>.json
STEERING_SUBDIR = "steering"  # analyses/steering/<key>/<model>-L<latent>-a<value>.json
SUGGESTIONS_SUBDIR = "suggestions"  # analyses/suggestions/<model>.parquet
ANALYSES_MANIFEST_JSON = "manifest.json"  # analyses/manifest.json: what `analyze` last computed
REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
# the analyses `analyze` runs by default: (attribute, positive, negative), when present
DEFAULT_FEATURES = (("language", "es", "en"), ("class", "music", "voice"))
