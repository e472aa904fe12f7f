"""Layer 8, dashboard: everything the Streamlit pages read, computed here so pages only lay it out.

What the pages show, one module per concern:

- `tasks`: the labelled tasks (attribute, positive, negatives) shown; defaults from
  core.constants.DEFAULT_FEATURES.
- `overview`: attribute counts and the models table (core.sae.catalog + training metrics).
- `browse`: the latent index of a model (stored CSC) and from it the latent table, its filter and
  a latent's page.
- `projection`: the stored 2-D UMAP map, and it coloured by a latent.
- `playback`: a catalogue segment's audio, cut server-side.
- `grid_view`: the stored precision/recall grids, heatmap with cell selection.
- `splitting_view`: the stored splitting analyses at one architecture and K.
- `steering_view`: the steering session, signed slider, chosen samples, chart frames and tables.
- `labeling_view`: label suggestions, history and label tables.
- `probe`: embedding a clip, its active latents and nearest catalogue segments.
- `nearest_index`: the nearest catalogue segments by cosine, from a faiss vector index stored
  under cache/ (keyed on the fingerprint) on big workspaces, brute force on small ones.
- `continuous_view`: a model's `continuous` result for one attribute, its figure and its
  top-latents table with links.
- `universality_view`: a latent's matches in the other SAEs it was compared with (stored
  `universality` results), for the latent page.

Around them: `cache_keys` (what the pages' st.cache_* entries are keyed on: workspace folder
and content (fingerprint + segment table digest), model weights version, stored analyses'
bytes), `cache` (the `dashboard-cache` command: latent index of every usable model + UMAP + nearest-segment index) and `chromium` (headless Chromium settings for the
browser test and the speed bench).

May import: every layer below (core.analysis, core.labels, core.sae, core.workspace, core.audio,
core.embedders). Never streamlit: pages own the UI.
"""
