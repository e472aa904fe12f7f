"""TitaNet (or any NeMo EncDecSpeakerLabelModel) from a local .nemo file, 192-d for TitaNet.

The paper embeds segments with a fine-tuned TitaNet; users bring their own .nemo checkpoint.
Nothing is ever downloaded: without --checkpoint this embedder refuses with a clear error.
Segments run through the model's forward() in padded batches with their true lengths.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from core.constants import SAMPLE_RATE
from core.embedders.base import Embedder, pick_device
from core.errors import InputError

BATCH_SIZE = 16


def _quiet_nemo() -> None:
    os.environ.setdefault("NEMO_TESTING", "0")
    for name in ("nemo_logger", "nemo", "lightning", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


class TitaNetEmbedder(Embedder):
    name = "titanet"
    sample_rate = SAMPLE_RATE

    def __init__(self, *, checkpoint: str | None = None, device: str | None = None):
        if not checkpoint:
            raise InputError(
                "embedder 'titanet' needs a local .nemo file: pass --checkpoint PATH/model.nemo "
                "(a fine-tuned TitaNet); nothing is downloaded"
            )
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise InputError(f"{path}: TitaNet checkpoint not found (need a local .nemo file)")
        _quiet_nemo()
        import torch
        from nemo.collections.asr.models import EncDecSpeakerLabelModel
        from nemo.utils import logging as nemo_logging

        nemo_logging.setLevel(logging.ERROR)
        self.torch = torch
        self.device = pick_device(device)
        self.checkpoint = str(path.resolve())
        try:
            model = EncDecSpeakerLabelModel.restore_from(str(path), map_location=torch.device(self.device))
        except Exception as exc:  # tar/yaml/state-dict problems: the user's file is wrong
            raise InputError(f"{path}: not a loadable NeMo speaker model (.nemo): {exc}") from None
        model.eval()
        self.model = model
        rate = model.cfg.get("sample_rate") or model.cfg.preprocessor.get("sample_rate", SAMPLE_RATE)
        if int(rate) != SAMPLE_RATE:
            raise InputError(f"{path}: model expects {rate} Hz audio; VoxSAE feeds {SAMPLE_RATE} Hz")
        self.dim = int(self._probe_dim())

    def _probe_dim(self) -> int:
        return self.embed([np.zeros(SAMPLE_RATE, dtype=np.float32)]).shape[1]

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        torch = self.torch
        chunks = []
        with torch.inference_mode():
            for lo in range(0, len(audios), BATCH_SIZE):
                batch = audios[lo : lo + BATCH_SIZE]
                lengths = [len(a) for a in batch]
                padded = np.zeros((len(batch), max(lengths)), dtype=np.float32)
                for i, a in enumerate(batch):
                    padded[i, : len(a)] = a
                signal = torch.from_numpy(padded).to(self.device)
                length = torch.tensor(lengths, device=self.device)
                _, emb = self.model.forward(input_signal=signal, input_signal_length=length)
                chunks.append(emb.float().cpu().numpy())
        if not chunks:
            return np.zeros((0, getattr(self, "dim", 0) or 192), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)
