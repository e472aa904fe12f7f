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
MODELS_DIR = "models"
ANALYSES_DIR = "analyses"
LABELS_SQLITE = "labels.sqlite"
CACHE_DIR = "cache"  # derived, recomputable artefacts (UMAP, per-model activations, ...)
AUDIO_DIR = "audio"  # audio a workspace owns (the demo corpus's synthesised calls)

# --- SAE checkpoint (SAELens file names) ------------------------------------------------
SAE_CFG_JSON = "cfg.json"
SAE_WEIGHTS_SAFETENSORS = "sae_weights.safetensors"
SAE_METRICS_JSON = "metrics.json"
TRAINING_STATE = "training_state.safetensors"  # optimiser + progress, for resume

# --- workspace format version, written into workspace.json --------------------------------
WORKSPACE_FORMAT_VERSION = 1

# --- audio -----------------------------------------------------------------------------
SAMPLE_RATE = 16_000  # every embedder here consumes 16 kHz mono

# --- segment table columns ----------------------------------------------------------------
SEGMENT_BASE_COLUMNS = ("segment_id", "source", "start_s", "end_s", "duration_s")
KNOWN_ATTRIBUTES = ("speaker", "language", "gender", "class", "split")
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
