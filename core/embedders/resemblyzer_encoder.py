"""Resemblyzer's VoiceEncoder (GE2E LSTM, 256-d), weights shipped inside the package.

We do not use resemblyzer.preprocess_wav: its webrtcvad trimming would re-cut segments that
segmentation already chose. Each segment is volume-normalised (as resemblyzer does, increase
only, to -30 dBFS), split into 1.6 s partial utterances exactly as VoiceEncoder.embed_utterance
does, and the partials of many segments run through the LSTM in one batch; a segment's
embedding is the L2-normalised mean of its partial embeddings (same result as embed_utterance).
embed_with_windows returns those partial embeddings too (L2-normalised, as the LSTM gives them):
a segment's windows at no extra cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.constants import SAMPLE_RATE
from core.embedders.base import Embedder, SegmentEmbeddings, WindowConfig, pick_device
from core.errors import InputError

PARTIAL_RATE = 1.3  # partial utterances per second (embed_utterance's default)
MIN_COVERAGE = 0.75
TARGET_DBFS = -30.0  # resemblyzer.hparams.audio_norm_target_dBFS
PARTIALS_PER_BATCH = 256
PARTIAL_WINDOW = WindowConfig(length_s=1.6, hop_s=0.77)
"""Resemblyzer's partial utterances as windows: 160 mel frames of 10 ms, one every
round(16000 / PARTIAL_RATE / 160) = 77 frames (a last partial covering less than MIN_COVERAGE of
its window is dropped, and a segment shorter than one partial is zero-padded to one)."""


def normalize_volume(wav: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Raise quiet audio to target_dbfs RMS (never lowers it), like resemblyzer.audio.normalize_volume."""
    wav = np.asarray(wav, dtype=np.float32)
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)))) if wav.size else 0.0
    if rms <= 1e-9:
        return wav
    change_db = target_dbfs - 20.0 * np.log10(rms)
    return wav * np.float32(10 ** (change_db / 20.0)) if change_db > 0 else wav


class ResemblyzerEmbedder(Embedder):
    name = "resemblyzer"
    dim = 256
    sample_rate = SAMPLE_RATE

    def __init__(self, *, checkpoint: str | None = None, device: str | None = None):
        import torch
        from resemblyzer import VoiceEncoder

        self.device = pick_device(device)
        self.checkpoint = checkpoint
        self.torch = torch
        if checkpoint and not Path(checkpoint).is_file():
            raise InputError(f"{checkpoint}: resemblyzer weights file not found")
        try:
            self.model = VoiceEncoder(device=self.device, verbose=False, weights_fpath=checkpoint)
        except Exception as exc:  # only a user-supplied weights file can fail to load
            raise InputError(f"{checkpoint}: not loadable resemblyzer weights ({exc})") from None
        self.model.eval()

    def _partials(self, wav: np.ndarray) -> np.ndarray:
        from resemblyzer import audio as rz_audio

        wav = normalize_volume(wav)
        wav_slices, mel_slices = self.model.compute_partial_slices(len(wav), PARTIAL_RATE, MIN_COVERAGE)
        need = wav_slices[-1].stop
        if need >= len(wav):
            wav = np.pad(wav, (0, need - len(wav)))
        mel = rz_audio.wav_to_mel_spectrogram(wav)
        return np.stack([mel[s] for s in mel_slices])

    def _partial_embeddings(self, audios: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [W, dim] L2-normalised partial embeddings, int64 [W] segment row of each)."""
        torch = self.torch
        if not audios:
            return np.zeros((0, self.dim), dtype=np.float32), np.zeros(0, dtype=np.int64)
        partials = [self._partials(a) for a in audios]
        owner = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(partials)])
        mels = np.concatenate(partials).astype(np.float32)
        embeds = np.empty((len(mels), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for lo in range(0, len(mels), PARTIALS_PER_BATCH):
                batch = torch.from_numpy(mels[lo : lo + PARTIALS_PER_BATCH]).to(self.device)
                embeds[lo : lo + len(batch)] = self.model(batch).float().cpu().numpy()
        return embeds, owner

    def _segment_means(self, embeds: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
        sums = np.zeros((n, self.dim), dtype=np.float32)
        np.add.at(sums, owner, embeds)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return (sums / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed(self, audios: list[np.ndarray]) -> np.ndarray:
        embeds, owner = self._partial_embeddings(audios)
        return self._segment_means(embeds, owner, len(audios))

    def window_settings(self, cfg: WindowConfig) -> dict:
        return {"kind": "resemblyzer partials", **PARTIAL_WINDOW.to_dict()}

    def embed_with_windows(self, audios: list[np.ndarray], cfg: WindowConfig) -> SegmentEmbeddings:
        """The windows are the partial utterances the segment embedding averages (cfg does not
        apply: the model's own 1.6 s windows, PARTIAL_WINDOW), each L2-normalised as the LSTM
        returns it; a segment's embedding is the L2-normalised mean of its windows."""
        embeds, owner = self._partial_embeddings(audios)
        return SegmentEmbeddings(self._segment_means(embeds, owner, len(audios)), embeds, owner)
