"""What the SAEs learn from: segments vs their windows vs both, and a small workspace alone vs pooled
(issue 12's measured table), over several training seeds on one workspace (default: the demo).

    OMP_NUM_THREADS=1 .venv/bin/python bench/training_rows.py [--workspace demo] [--seeds 0,1,2]
        [--latents 100,200,400] [--k 10,20] [--small 500] [--parts rows,pool]

rows: for each of `train --rows segments|windows|both` and each seed, the grid is trained in a
replica of the workspace (cache/training-rows/<rows>-seed<S>: the same segments, embeddings and
windows) and identified on whole segments (the paper's unit, unchanged by --rows); printed per
feature (language=es, class=music): the best cell's min(precision, recall) and the cells' mean.

pool: a small workspace of `--small` SAE-training segments drawn (by speaker, seed 0) from the
workspace's sae split plus its whole feature split, trained alone and with `--pool` of the full
workspace, the same figures.

Every figure is a mean ± sample sd over the seeds. Last line: key=value pairs
(`es_minpr_segments=... es_minpr_windows=... music_minpr_both=... es_minpr_small=... es_minpr_pooled=...`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.analysis.identification import identify  # noqa: E402
from core.constants import SPLIT_SAE  # noqa: E402
from core.training.config import TrainConfig  # noqa: E402
from core.training.grid import parse_int_list, train_grid  # noqa: E402
from core.workspace.workspace import Workspace  # noqa: E402

FEATURES = (("language", "es", "en"), ("class", "music", "voice"))
ROWS = ("segments", "windows", "both")
BENCH_DIR = "training-rows"


def replica(ws: Workspace, name: str, rows: np.ndarray | None = None) -> Workspace:
    """A workspace of ws's segments (all, or `rows`) with their embeddings and windows, reused when
    its content is what it would be now."""
    from core.workspace.workspace import Windows

    root = ws.cache_dir / BENCH_DIR / name
    seg, emb, win = ws.segments, np.asarray(ws.embeddings), ws.windows
    if rows is not None:
        seg = seg.iloc[rows].reset_index(drop=True)
        emb = emb[rows]
        if win is not None:
            keep = np.isin(win.segment_rows, rows)
            new_row = np.full(len(ws), -1, np.int64)
            new_row[rows] = np.arange(len(rows))
            win = Windows(np.asarray(win.embeddings)[keep], new_row[np.asarray(win.segment_rows)[keep]])
    if Workspace.exists(root):
        rep = Workspace(root)
        if len(rep) == len(seg) and np.array_equal(np.asarray(rep.embeddings), emb):
            return rep
    return Workspace.create(root, seg, emb, embedder=ws.embedder, sample_rate=ws.info.sample_rate,
                            provenance={"command": "bench/training_rows.py", "replica_of": str(ws.root)},
                            windows=win)  # fmt: skip


def cells(ws: Workspace) -> dict[str, dict]:
    """feature -> {best: max over models of min(P, R), mean: the mean of min(P, R), models}."""
    out = {}
    for attr, pos, neg in FEATURES:
        res = identify(ws, attr, pos, [neg])
        mins = {m["model"]: min(m["precision"], m["recall"]) for m in res["models"]}
        out[pos] = {"best": max(mins.values()), "mean": statistics.fmean(mins.values()), "models": mins}
    return out


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def small_rows(ws: Workspace, n_sae: int) -> np.ndarray:
    """Rows of a small workspace: about n_sae sae-split segments (whole speakers, drawn with seed 0)
    and every other segment (the feature split the analyses read)."""
    seg = ws.segments
    sae = seg["split"].astype(str).to_numpy() == SPLIT_SAE
    speakers = seg.loc[sae, "speaker"].astype(str)
    order = np.random.default_rng(0).permutation(np.array(sorted(speakers.unique()), dtype=object))
    counts = speakers.value_counts()
    chosen, total = [], 0
    for spk in order:
        if total >= n_sae:
            break
        chosen.append(spk)
        total += int(counts[spk])
    keep = ~sae | seg["speaker"].astype(str).isin(chosen).to_numpy()
    return np.flatnonzero(keep)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workspace", default="demo")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--latents", default="100,200,400")
    p.add_argument("--k", default="10,20")
    p.add_argument("--small", type=int, default=500, help="SAE-training segments of the small workspace")
    p.add_argument("--parts", default="rows,pool")
    args = p.parse_args()
    ws = Workspace.open(args.workspace)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    grid = {"latents": parse_int_list("--latents", args.latents), "ks": parse_int_list("--k", args.k)}
    parts = set(args.parts.split(","))
    figures: dict[str, dict[str, list[float]]] = {}
    t0 = time.time()

    def run(label: str, target: Workspace, **train) -> None:
        for seed in seeds:
            t = time.time()
            train_grid(target, TrainConfig(**grid, seed=seed, **train), progress=False)
            found = cells(target)
            for pos, c in found.items():
                figures.setdefault(label, {}).setdefault(f"{pos}_best", []).append(c["best"])
                figures[label].setdefault(f"{pos}_mean", []).append(c["mean"])
            print(f"  {label} seed {seed}: " + ", ".join(f"{pos} best {c['best']:.3f} mean {c['mean']:.3f}"
                                                       for pos, c in found.items())
                  + f" ({time.time() - t:.0f} s)", flush=True)  # fmt: skip
            # the next seed trains over this one's models: same names, another seed
            for m in target.models_dir.iterdir():
                import shutil

                shutil.rmtree(m)

    if "rows" in parts:
        if ws.windows is None:
            raise SystemExit(
                f"workspace {ws.name} has no window embeddings: rebuild it (demo-corpus --force)"
            )
        print(f"workspace {ws.name}: {len(ws)} segments, {len(ws.windows.embeddings)} windows", flush=True)
        for rows in ROWS:
            run(rows, replica(ws, f"rows-{rows}"), rows=rows)
    if "pool" in parts:
        rows = small_rows(ws, args.small)
        small = replica(ws, f"small-{args.small}", rows)
        n_sae = int((small.segments["split"].astype(str) == SPLIT_SAE).sum())
        print(f"small workspace: {len(small)} segments, {n_sae} of them SAE-training", flush=True)
        run("small", small)
        run("pooled", small, pool=(str(ws.root),))
    print()
    print(f"{'training rows':<14}" + "".join(f"{k:>22}" for k in next(iter(figures.values()))))
    for label, figs in figures.items():
        print(f"{label:<14}" + "".join(f"{spread(v):>22}" for v in figs.values()))
    print(f"({len(seeds)} seeds, grid latents {args.latents} x K {args.k}; {time.time() - t0:.0f} s)")
    keys = [f"{k.replace('_best', '_minpr')}_{label}={statistics.fmean(v):.3f}"
            for label, figs in figures.items() for k, v in figs.items() if k.endswith("_best")]  # fmt: skip
    print(" ".join(keys))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
