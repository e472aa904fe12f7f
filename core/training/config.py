"""What a grid training run is asked to do (TrainConfig) and what it did (TrainResult).

A TrainConfig checks itself when made: every number finite and in range, so a NaN learning rate
or a zero epoch cap is refused before any data is read. Its errors name the `train` flag of the
setting (`--lr nan: must be a finite number > 0`), or the field where there is no flag.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from core.errors import InputError
from core.sae import ARCHITECTURES
from core.sae.base import number_problem

PAPER_LATENTS = (100, 200, 300, 400, 500, 600)
PAPER_KS = (5, 10, 15, 20, 25, 30, 35)
ROW_KINDS = ("segments", "windows", "both")
"""What the SAEs train on (TrainConfig.rows)."""
DEFAULT_ROWS = "segments"
STREAM_FIELDS = ("stream_above_bytes", "shard_rows", "buffer_shards")
"""TrainConfig fields of the streamed path (core.training.shards)."""
MAX_SEED = 2**63 - 1
"""Largest seed torch.Generator.manual_seed takes as a signed 64-bit value."""

FLAGS = {
    "lr": "--lr",
    "l1_coefficient": "--l1",
    "seed": "--seed",
    "epochs": "--epochs",
    "max_epochs": "--max-epochs",
    "batch_size": "--batch-size",
    "rows": "--rows",
}
"""The `train` flag of each TrainConfig field that has one (architecture options: --NAME)."""


def flag_of(name: str) -> str:
    """How an error names setting `name`: its train flag, else the field itself."""
    return FLAGS.get(name, name)


def option_flag(name: str) -> str:
    """The train flag of architecture option `name` (underscores as dashes)."""
    return f"--{name.replace('_', '-')}"


@dataclass
class TrainConfig:
    """One grid training run. Everything except `device` enters the models' cache key."""

    archs: tuple[str, ...] = ("topk",)
    """Architectures to train (names of core.sae.ARCHITECTURES: 'topk', 'relu', 'batchtopk', 'jumprelu')."""
    latents: tuple[int, ...] = PAPER_LATENTS
    """Latent dims of the grid (the paper: 100-600 step 100)."""
    ks: tuple[int, ...] = PAPER_KS
    """K values of the grid (the paper: 5-35 step 5); architectures without K (relu, jumprelu) ignore them."""
    epochs: int | None = None
    """Exactly this many epochs, no early stop (None: early stop, at most max_epochs)."""
    max_epochs: int = 100
    """Cap on epochs when early stopping: a safety net, not the usual stop (on the embedded
    default the 42 models stop between epochs 28 and 56 when their validation NMSE is stable)."""
    tol: float = 2e-3
    """Early stop when validation NMSE improves by less than this fraction of its best ..."""
    patience: int = 2
    """... for this many consecutive epochs."""
    batch_size: int = 1024
    """Samples per step (shrunk to n_train // 32, at least 32, on small corpora)."""
    lr: float = 1e-3
    """Adam learning rate."""
    seed: int = 0
    """Seeds the train/validation split, the data order and every model's initialisation."""
    val_fraction: float = 0.1
    """Fraction of the training rows held out for validation."""
    l1_coefficient: float = 0.3
    """L1 weight for relu models."""
    auxk_coefficient: float = 1.0 / 32.0
    """AuxK weight for topk / batchtopk (0 turns it off)."""
    device: str | None = None
    """'cpu', 'cuda' or None (CUDA when present)."""
    sae_options: dict[str, float] = field(default_factory=dict)
    """Architecture options (SAE.options, e.g. jumprelu's l0_coefficient): each applies to the
    architectures of the grid that have it; unset ones take the architecture's default. They
    enter the key through each model's SAE config."""
    rows: str = DEFAULT_ROWS
    """The SAE-training rows (ROW_KINDS): the sae split's segment embeddings ('segments'), those
    segments' window embeddings ('windows', the workspace's windows.npy), or both together
    ('both'). The train/validation split is drawn over segments, then each side is expanded to
    its rows, so no window of a validation segment is trained on. Identification, the grid,
    splitting and steering stay on whole segments whatever this says."""

    pool: tuple[str, ...] = ()
    """Other workspaces (names or paths) whose `sae`-split rows join this workspace's training
    rows (`--pool`, core.training.pool); each must share its embedder and dimension. Their names
    and fingerprints enter the models' key (only when a pool is given)."""

    stream_above_bytes: int = 2_000_000_000
    """Memory budget of the training rows: when they hold more float32 bytes than this, batches
    are read from the memory-mapped files in shards (core.training.shards) instead of from one
    tensor of every row; 0 always streams. Validation rows stay in memory either way."""
    shard_rows: int = 32_768
    """Consecutive training rows per shard when streaming (the unit the epoch order permutes)."""
    buffer_shards: int = 16
    """Shards per shuffle buffer when streaming: rows are permuted within a buffer of this many
    shards; this buffer and the next (read ahead) are what is held, 2 x 16 x 32,768 rows (about
    0.5 GB at 192-d) by default. When one buffer holds every shard the order is the in-memory
    path's; otherwise shard_rows and buffer_shards enter the models' key."""

    def __post_init__(self) -> None:
        for name, minimum, strict in (
            ("lr", 0.0, True),
            ("l1_coefficient", 0.0, False),
            ("auxk_coefficient", 0.0, False),
            ("tol", 0.0, False),
        ):
            _refuse(flag_of(name), getattr(self, name), number_problem(getattr(self, name), minimum, strict))
        _refuse(
            flag_of("stream_above_bytes"),
            self.stream_above_bytes,
            _integer_problem(self.stream_above_bytes, 0),
        )
        for name in ("max_epochs", "batch_size", "patience", "shard_rows", "buffer_shards") + (
            ("epochs",) if self.epochs is not None else ()
        ):
            _refuse(flag_of(name), getattr(self, name), _integer_problem(getattr(self, name), 1))
        _refuse("--seed", self.seed, _integer_problem(self.seed, 0, MAX_SEED))
        if self.rows not in ROW_KINDS:
            _refuse("--rows", self.rows, f"must be one of {', '.join(ROW_KINDS)}")
        vf = self.val_fraction
        if not (isinstance(vf, (int, float)) and 0 < vf < 1):  # NaN fails this too
            _refuse("val_fraction", vf, "must be a number between 0 and 1 (exclusive)")
        for name, value in self.sae_options.items():
            for impl in ARCHITECTURES.values():
                if name in impl.options:
                    _refuse(option_flag(name), value, impl.options[name].problem(value))

    def key_fields(self) -> dict[str, Any]:
        d = asdict(self)
        # pool: keyed by fingerprint; streaming: keyed by grid_specs only when it changes the order
        for k in ("archs", "latents", "ks", "device", "sae_options", "pool", *STREAM_FIELDS):
            d.pop(k)
        if d["rows"] == DEFAULT_ROWS:  # the keys of models trained before `rows` existed stay valid
            d.pop("rows")
        return d


class TrainResult(NamedTuple):
    trained: list[str]
    """Models trained by this run (a resumed run counts those finished before the crash too)."""
    cached: list[str]
    """Models already up to date (not retrained)."""
    state_path: Path
    """The resumable training state file (gone once the run finished)."""


def _integer_problem(value: Any, minimum: int, maximum: int | None = None) -> str | None:
    """Why `value` is not an integer within [minimum, maximum], or None."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if maximum is None:
        return None if ok else f"must be an integer >= {minimum}"
    return None if ok and value <= maximum else f"must be an integer from {minimum} to {maximum}"


def _refuse(flag: str, value: Any, why: str | None) -> None:
    if why:
        raise InputError(f"{flag} {value!r}: {why}")
