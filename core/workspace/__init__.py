"""Layer 3, workspace: the folder that holds one corpus (`workspace`: segments.parquet,
embeddings.npy, optional windows.npy + window_segments.npy, workspace.json), how it is made
(`ingest` from audio, its per-file work on Ray Data with `--ray` in `ray_ingest`;
`import_embeddings` from an embeddings file; both read a metadata CSV through `metadata`) and
its `summary`.

May import: core.audio, core.embedders, core.constants, core.errors, core.atomic, core.filehash.
"""
