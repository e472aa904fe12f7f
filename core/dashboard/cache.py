"""`python -m core dashboard-cache`: precompute what the dashboard reads, each only when missing:
the latent index of every usable model (core.dashboard.browse), the 2-D UMAP map
(core.dashboard.projection) and, on a workspace of at least nearest_index.MIN_INDEX_ROWS rows,
the vector index of nearest segments (core.dashboard.nearest_index), and the memory-mapped copy
of the segment table the server reads (core.dashboard.segments_table). `make demo` runs it
before serving the dashboard. A model folder
that cannot be used is named on stderr with the reason (one `warning: ...` line each); when none
is usable the command fails with one error listing them. Each cached thing is keyed on the
content it is computed from, so a changed corpus or model is computed anew."""

from __future__ import annotations


def add_arguments(parser) -> None:
    parser.add_argument("--workspace", default=None, help="workspace name or path (default: demo)")
    parser.add_argument("--no-umap", action="store_true", help="skip the 2-D map")


def main(args) -> int:
    """Build every model's latent index and the UMAP map (each only when missing)."""
    from tqdm import tqdm

    from core.analysis.models import warn_unusable_models
    from core.constants import DEFAULT_WORKSPACE
    from core.dashboard import segments_table
    from core.dashboard.browse import ensure_index
    from core.dashboard.projection import load_projection, projection_path
    from core.workspace.workspace import Workspace

    ws = Workspace.open(args.workspace or DEFAULT_WORKSPACE)
    print(f"segment table for the server: {segments_table.ensure(ws)}")
    models = warn_unusable_models(ws)  # a model folder left out is named, with the reason
    for m in tqdm(models, desc="latent indexes", unit="model"):
        ensure_index(ws, m.name)
    print(f"latent indexes of {len(models)} model(s): {ws.cache_dir / 'browse'}")
    print(nearest_index_line(ws))
    if not args.no_umap:
        if load_projection(ws) is None:
            from core.dashboard.projection import compute_projection

            bar = tqdm(total=100, desc="UMAP", unit="%")

            def step(frac: float, text: str) -> None:
                bar.set_postfix_str(text)
                bar.update(max(0, int(frac * 100) - bar.n))

            compute_projection(ws, progress=step)
            bar.close()
        print(f"UMAP map: {projection_path(ws)}")
    return 0


def nearest_index_line(ws) -> str:
    """Build the nearest-segment index when missing or unusable; one line saying what there is."""
    from core.dashboard import nearest_index

    built = nearest_index.ensure_index(ws)
    if built is None:
        return f"nearest segments: brute force ({len(ws):,} rows, under {nearest_index.DEFAULT_SETTINGS.min_rows:,})"
    return f"nearest-segment index ({built.rows:,} rows, {built.lists} lists): {built.path}"
