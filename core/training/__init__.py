"""Layer 5, training: the grid of SAEs (architecture x latent size x K) trained in one pass over
the data, resumable after a crash.

`config` (TrainConfig, TrainResult), `trainer` (the epoch loop over batches of tensors: stacks,
validation, early stop; no files), `state` (the resumable state file), `grid` (the grid from the
architecture registry, a workspace's training rows, the model cache, `train_grid` and the `train`
command).

May import: core.sae, core.workspace (only to read the training rows), and the base modules
core.constants, core.errors, core.atomic.
"""
