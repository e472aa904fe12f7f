"""Layer 8, dashboard: everything the Streamlit pages read, computed here so pages only lay it out.

`browse` (latent table and latent pages from a stored index), `playback` (segment audio cut
server-side), `projection` (the stored UMAP), `views` (display glue: tasks, grid heatmap with
cell selection, steering frames, clip probing and the `dashboard-cache` command).

May import: every layer below (core.analysis, core.labels, core.sae, core.workspace, core.audio,
core.embedders). Never streamlit: pages own the UI.
"""
