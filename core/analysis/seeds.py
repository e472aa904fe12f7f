"""`python -m core seeds --workspace NAME [--seeds 0,1,2]`: the report's claims over training seeds.

One grid trained once can be lucky. This command trains the same grid with each seed, runs the
same analyses on each, and states every figure the report's claims rest on as a mean and a spread
(sample standard deviation, min, max), so a reader can tell a real difference from noise.

* A seed whose grid is already the workspace's own models (same settings, same seed) uses them;
  every other seed trains in a replica of the workspace under cache/seeds/seed-S (the same
  segments and embeddings, so the same fingerprint and the same feature datasets: only the SAEs'
  seed differs). Replicas are cached like any workspace: a rerun trains and analyses nothing.
* analyses/seeds.json holds the per-seed figures and their spread, keyed on the workspace
  fingerprint, the seeds and the training settings; the report shows it when it is fresh.

    spread = seed_spread(ws, seeds=(0, 1, 2))      # computes or reuses
    load_seed_spread(ws)                            # None when never run or stale
"""

from __future__ import annotations

import statistics

from core.analysis.store import INPUTS, ResultStore, segments_digest
from core.errors import InputError
from core.workspace.workspace import Workspace

SEEDS_DIR = "seeds"  # cache/seeds/seed-<S>: one replica workspace per extra training seed
RESULT_NAME = "seeds"  # analyses/seeds.json
DEFAULT_SEEDS = (0, 1, 2)
FIGURES_VERSION = 2
"""2: a cell counts at the 90/90 bar by its 95 % interval lower bounds (core.analysis.grid.at_bar),
and the best cell's lower bound is a figure; a spread stored before is stale."""


def seed_figures(report: dict) -> dict[str, float]:
    """The numbers the report's claims rest on, flat: {figure name: value} (fractions as 0-1)."""
    out: dict[str, float] = {}
    for f in report["features"]:
        pos = f["positive"]
        out[f"{pos}: grid cells >= 90/90 (95% CI lower bounds)"] = float(f["grid"]["cells_at_bar"])
        models = f["identification"]["models"]
        best = max(models, key=lambda m: (min(m["precision"], m["recall"]), m["f1"]), default=None)
        if best is not None:
            out[f"{pos}: best cell min(precision, recall)"] = min(best["precision"], best["recall"])
        best_lo = max(models, key=lambda m: (min(m["precision_lo"], m["recall_lo"]), m["f1"]), default=None)
        if best_lo is not None:
            out[f"{pos}: best cell min(precision, recall) 95% CI lower bound"] = min(
                best_lo["precision_lo"], best_lo["recall_lo"]
            )
        focus = f["identification"]["focus"]
        out[f"{pos}: focus cell precision"] = focus["precision"]
        out[f"{pos}: focus cell recall"] = focus["recall"]
        if "steering" in f:
            st = f["steering"]
            p, n = f["classes"]
            out[f"{pos}: models whose steering flips both classes"] = float(st["models_flipping_both"])
            out[f"{pos}: focus cell mean delta_s of {p} after steering"] = st["classes"][p]["mean_after"]
            out[f"{pos}: focus cell mean delta_s of {n} after steering"] = st["classes"][n]["mean_after"]
        if "splitting" in f and f["splitting"]["subgroup"] is not None:
            out[f"{pos}: model pairs splitting it by {f['splitting']['subgroup']}"] = float(
                f["splitting"]["n_subgroup_split"]
            )
    return out


def spread_rows(per_seed: dict[int, dict[str, float]]) -> list[dict]:
    """One row per figure: its value at every seed, mean, sd (n-1), min, max."""
    names = sorted({k for figs in per_seed.values() for k in figs})
    rows = []
    for name in names:
        values = {s: figs[name] for s, figs in per_seed.items() if name in figs}
        vals = list(values.values())
        rows.append(
            {
                "figure": name,
                "values": {str(s): v for s, v in values.items()},
                "n": len(vals),
                "mean": statistics.fmean(vals),
                "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "min": min(vals),
                "max": max(vals),
            }
        )
    return rows


def _train_settings(latents, ks, epochs) -> dict:
    from core.training.config import TrainConfig

    given = {"latents": tuple(latents or ()), "ks": tuple(ks or ()), "epochs": epochs}
    cfg = TrainConfig(**{k: v for k, v in given.items() if v})
    return {
        "latents": list(cfg.latents),
        "ks": list(cfg.ks),
        **{k: v for k, v in cfg.key_fields().items() if k != "seed"},
    }


def _inputs(store: ResultStore, seeds, settings: dict) -> dict:
    return store.inputs(seeds=list(seeds), train=settings, figures=FIGURES_VERSION)


def load_seed_spread(ws: Workspace | str) -> dict | None:
    """The stored spread; None when never computed, when the workspace changed since, or when its
    figures are of an older kind (FIGURES_VERSION)."""
    out = ResultStore(ws).load_json("", RESULT_NAME)
    if out is None or (out.get(INPUTS) or {}).get("figures") != FIGURES_VERSION:
        return None
    return out


def _replica(ws: Workspace, seed: int) -> Workspace:
    root = ws.cache_dir / SEEDS_DIR / f"seed-{seed}"
    if Workspace.exists(root):
        rep = Workspace(root)
        # the fingerprint leaves out column names and the base columns; the analyses read both
        if rep.fingerprint == ws.fingerprint and segments_digest(rep) == segments_digest(ws):
            return rep
    return Workspace.create(
        root,
        ws.segments,
        ws.embeddings,
        embedder=ws.embedder,
        sample_rate=ws.info.sample_rate,
        provenance={"command": "seeds", "replica_of": str(ws.root), "seed": seed},
        windows=ws.windows,  # part of the fingerprint, and what `train --rows windows` reads
    )


def seed_spread(
    ws: Workspace | str,
    *,
    seeds=DEFAULT_SEEDS,
    latents=None,
    ks=None,
    epochs: int | None = None,
    progress: bool = True,
) -> dict:
    """Train + analyse the grid at every seed (reusing what is up to date); store and return the spread."""
    from core.analysis.analyze import run_analyses
    from core.analysis.report import build_report
    from core.training.config import TrainConfig
    from core.training.grid import grid_specs, is_cached, train_grid

    ws = Workspace.of(ws)
    seeds = sorted(set(int(s) for s in seeds))
    if len(seeds) < 2:
        raise InputError(f"--seeds needs at least two different seeds to measure a spread, got {seeds}")
    if any(s < 0 for s in seeds):
        raise InputError(f"--seeds must be non-negative integers, got {seeds}")
    settings = _train_settings(latents, ks, epochs)
    store = ResultStore(ws)
    inputs = _inputs(store, seeds, settings)
    stored = store.load_json("", RESULT_NAME, inputs=inputs)
    if stored is not None:
        return stored
    per_seed: dict[int, dict[str, float]] = {}
    where: dict[str, str] = {}
    for seed in seeds:
        cfg = TrainConfig(
            latents=tuple(settings["latents"]), ks=tuple(settings["ks"]), epochs=settings["epochs"], seed=seed
        )
        own = all(is_cached(ws, spec) for spec in grid_specs(ws, cfg))
        target = ws if own else _replica(ws, seed)
        if progress:
            print(f"seed {seed}: {'the workspace models' if own else target.root}", flush=True)
        train_grid(target, cfg, progress=progress)
        run_analyses(target, progress=progress)
        report, _ = build_report(target, run=False, progress=progress)
        per_seed[seed] = seed_figures(report)
        where[str(seed)] = "workspace" if own else str(target.root.relative_to(ws.root))
    result = {"seeds": seeds, "models_of": where, "figures": spread_rows(per_seed)}
    return store.save_json("", RESULT_NAME, result, inputs)


def spread_text(row: dict, fmt=lambda v: f"{v:.3g}") -> str:
    """'0.91 ± 0.02 (0.89-0.93, 3 seeds)'."""
    return f"{fmt(row['mean'])} ± {fmt(row['sd'])} ({fmt(row['min'])} to {fmt(row['max'])}, {row['n']} seeds)"


# -- CLI ----------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("--workspace", required=True, help="workspace name or path")
    parser.add_argument(
        "--seeds",
        type=_seed_list,
        default=DEFAULT_SEEDS,
        help="training seeds, comma-separated (default 0,1,2)",
    )
    parser.add_argument("--latents", default=None, help="latent dims, comma-separated (default: train's)")
    parser.add_argument("--k", default=None, help="K values, comma-separated (default: train's)")
    parser.add_argument(
        "--epochs", type=int, default=None, help="exactly N epochs (default: train's early stop)"
    )


def _seed_list(text: str) -> tuple[int, ...]:
    import argparse

    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    return vals


def main(args) -> int:
    ws = Workspace.open(args.workspace)
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {args.epochs}")
    from core.training.grid import parse_int_list

    latents, ks = parse_int_list("--latents", args.latents), parse_int_list("--k", args.k)
    out = seed_spread(ws, seeds=args.seeds, latents=latents, ks=ks, epochs=args.epochs)
    print(f"over training seeds {', '.join(map(str, out['seeds']))} (mean ± sd, min to max):")
    for row in out["figures"]:
        per = " ".join(f"{s}:{v:.3g}" for s, v in row["values"].items())
        print(f"  {row['figure']:<55} {spread_text(row)}   [{per}]")
    print(f"wrote {ResultStore(ws).path('', RESULT_NAME)}")
    return 0
