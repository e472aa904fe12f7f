"""Layer 5, training: the grid of SAEs (architecture x latent size x K) trained in one pass over
the data, resumable after a crash.

`config` (TrainConfig, checked when made; TrainResult), `trainer` (the epoch loop over batches of
tensors: stacks, validation, early stop, stopping a model whose loss or weights turn non-finite;
no files), `shards` (training rows streamed from the memory-mapped files in shards, when they exceed
TrainConfig.stream_above_bytes), `state` (the resumable state file), `memory` (a grid's memory need, estimated before
anything is allocated), `grid` (the grid from the architecture registry, a workspace's training
rows, the model cache, `train_grid` and the `train` command), `pool` (`train --pool`: other
workspaces' training rows, checked and keyed).

May import: core.sae, core.workspace (only to read the training rows), and the base modules
core.constants, core.errors, core.atomic.
"""
