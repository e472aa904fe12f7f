"""Layer 5, training: the grid of SAEs (architecture x latent size x K) trained in one pass over
the data, resumable after a crash.

May import: core.sae, core.workspace (only to read the training rows), core.constants,
core.errors, core.atomic.
"""
