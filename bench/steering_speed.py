"""Steering speed: one latent, 800 test samples (the paper's language test set), resemblyzer-sized
embeddings (256-d) and the paper's SAE shape (200 latents, K=20).

Prints the time of SteeringSession.steer (the part the dashboard slider redoes) against a naive
per-sample loop through sae.decode measured in the same run, and checks they agree.
Target: <= 50 ms for 800 samples on the 2-core CPU.

    .venv/bin/python bench/steering_speed.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.analysis.steering import SteeringSession, steer_naive  # noqa: E402
from core.sae import SAEConfig, create_sae  # noqa: E402
from core.sae.activations import encode_array  # noqa: E402

N_TEST, N_TRAIN, D_IN, D_SAE, K = 800, 1171, 256, 200, 20
TARGET_MS = 50.0


def main() -> int:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    sae = create_sae(SAEConfig(architecture="topk", d_in=D_IN, d_sae=D_SAE, k=K, seed=0)).eval()
    direction = rng.normal(size=D_IN).astype(np.float32)
    y_train = rng.random(N_TRAIN) < 0.5
    y_test = np.arange(N_TEST) < N_TEST // 2
    x_train = rng.normal(size=(N_TRAIN, D_IN)).astype(np.float32) + y_train[:, None] * direction
    x_test = rng.normal(size=(N_TEST, D_IN)).astype(np.float32) + y_test[:, None] * direction
    z_train, z_test = encode_array(sae, x_train), encode_array(sae, x_test)
    w = sae.W_dec.detach().numpy()
    b = sae.b_dec.detach().numpy()
    speakers = np.array([f"spk{i % 80}" for i in range(N_TEST)])

    t0 = time.perf_counter()
    session = SteeringSession("bench", D_SAE, z_test, y_test, z_train, y_train, w, b, ("es", "en"), speakers)
    setup_ms = 1000 * (time.perf_counter() - t0)

    latent = 15
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        res = session.steer(latent, 1.0)
        res.summary()
        times.append(time.perf_counter() - t0)
    fast_ms = 1000 * float(np.median(times))

    t0 = time.perf_counter()
    before, after = steer_naive(sae, z_test, y_test, latent, 1.0, session.c_pos, session.c_neg)
    naive_ms = 1000 * (time.perf_counter() - t0)
    agree = np.allclose(res.delta_after, after, atol=1e-5) and np.allclose(
        res.delta_before, before, atol=1e-5
    )

    print(f"steering {N_TEST} samples, one latent (d_in {D_IN}, d_sae {D_SAE}, K {K}):")
    print(f"  session setup (once per model/dataset): {setup_ms:8.2f} ms")
    print(f"  vectorised steer + summary (median/30): {fast_ms:8.3f} ms   (target <= {TARGET_MS:.0f} ms)")
    print(f"  naive per-sample loop (same run):       {naive_ms:8.2f} ms")
    print(f"  speed-up: {naive_ms / fast_ms:.0f}x   results agree: {agree}")
    return 0 if agree and fast_ms <= TARGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
