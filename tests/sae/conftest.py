"""Every test here runs on one torch thread (sae_synth.one_torch_thread)."""

from sae_synth import one_torch_thread  # noqa: F401 - an autouse fixture for this folder
