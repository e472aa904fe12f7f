"""`python -m core analyze --workspace NAME`: the paper's analyses with the defaults, over every model.

For each default feature present in the workspace (language es vs en, class music vs voice):
identification (+ the grid), feature splitting, steering of the identified latent of every model;
then label suggestions for every model. Cached: analyses/manifest.json records the workspace
content and the model checksums it was computed from, so a rerun with nothing changed does
nothing, and a result the manifest lists that is missing or corrupt (deleted, or never written
by a run that was killed) is computed again. A model folder that cannot be used is left out and
named on stderr (`warning: model NAME skipped: why`); when none is usable the command fails with
one error listing them. A write that fails (disk full, read-only) is the command's one error.

    manifest = run_analyses(ws)           # computes or reuses
    manifest = load_manifest(ws)          # what the dashboard / report read (None if never run)
    paper_model(models)                   # 'topk-L200-K20' when present (the paper's cell)

What the dashboard reads (each returns None when not computed yet; nothing here trains or encodes
except the steering session):
    core.analysis.datasets.load_feature_dataset(ws, attr, pos, negs)     -> FeatureDataset (train/test rows)
    core.analysis.identification.load_identification(ws, attr, pos)      -> dict; identification_frame(d)
    core.analysis.grid.load_grid(ws, attr, pos)                          -> DataFrame; grid_table, grid_chart
    core.analysis.splitting.load_splitting(ws, attr, pos)                -> dict; tracks_frame, splits_frame,
                                                                   first_splits, splitting_chart
    core.analysis.steering.load_steering(ws, attr, pos, model, latent)   -> dict (+ 'distributions'); steering_chart
    core.analysis.steering.steering_session(ws, model, attr, pos)        -> SteeringSession; .steer(latent, a)
                                                                   (~1 ms: for a slider)
    core.analysis.suggestions.load_suggestions(ws, model)                -> DataFrame; latent_suggestions(df, i)
    core.analysis.report.load_report(ws)                                 -> the report.json dict
"""

from __future__ import annotations

import sys
import time

from core.analysis.store import ResultStore, content_key
from core.atomic import WriteError
from core.constants import ANALYSES_MANIFEST_JSON, DEFAULT_FEATURES
from core.errors import NotFoundError, VoxSAEError
from core.workspace.workspace import Workspace

_VERSION = 1
PAPER_MODEL = "topk-L200-K20"


def default_features(ws: Workspace) -> tuple[list[tuple[str, str, str]], list[str]]:
    """The default (attribute, positive, negative) present in the workspace, and why others are not."""
    present, skipped = [], []
    for attr, pos, neg in DEFAULT_FEATURES:
        if attr not in ws.segments.columns:
            skipped.append(f"{attr}: no such attribute")
            continue
        values = ws.attribute_values(attr)
        missing = [v for v in (pos, neg) if v not in values]
        if missing:
            skipped.append(f"{attr}: no value {', '.join(missing)}")
            continue
        present.append((attr, pos, neg))
    return present, skipped


def paper_model(models: list[str]) -> str | None:
    """The paper's cell (topk, 200 latents, K=20) when trained, else None."""
    return PAPER_MODEL if PAPER_MODEL in models else None


MANIFEST = ANALYSES_MANIFEST_JSON.removesuffix(".json")


def load_manifest(ws: Workspace | str, model_workspace=None) -> dict | None:
    """What `analyze` last computed; None when never run, or when the workspace or a model changed."""
    return ResultStore(ws, model_workspace).load_json("", MANIFEST)


def _missing_results(ws: Workspace, manifest: dict, model_workspace=None) -> list[str]:
    """What a fresh manifest lists but the store does not hold fresh (deleted, corrupt, or left
    out by a run killed after it): those are computed again, not reported from the manifest."""
    from core.analysis.datasets import load_feature_dataset
    from core.analysis.grid import load_grid
    from core.analysis.identification import load_identification
    from core.analysis.splitting import load_splitting
    from core.analysis.steering import load_steering
    from core.analysis.suggestions import load_suggestions

    missing = []
    for f in manifest.get("features", []):
        if f.get("status") != "done":
            continue
        attr, pos, negs = f["attribute"], f["positive"], f["negatives"]
        if load_feature_dataset(ws, attr, pos, negs) is None:
            missing.append(f"features {attr}")
        for kind, load in (
            ("identification", load_identification),
            ("grid", load_grid),
            ("splitting", load_splitting),
        ):
            if load(ws, attr, pos, negs, model_workspace=model_workspace) is None:
                missing.append(f"{kind} {attr}")
        for s in f.get("steering", []):
            kw = {"latent": s["latent"], "value": s["value"], "negatives": negs}
            if load_steering(ws, attr, pos, s["model"], model_workspace=model_workspace, **kw) is None:
                missing.append(f"steering {attr} {s['model']}")
    for m in manifest.get("models", []):
        if load_suggestions(ws, m["name"], model_workspace=model_workspace) is None:
            missing.append(f"suggestions {m['name']}")
    return missing


def run_analyses(
    ws: Workspace | str,
    *,
    model_workspace: Workspace | str | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    from core.analysis.grid import compute_grid
    from core.analysis.identification import identify
    from core.analysis.models import list_model_refs
    from core.analysis.splitting import compute_splitting
    from core.analysis.steering import run_steering
    from core.analysis.suggestions import compute_suggestions

    store = ResultStore(ws, model_workspace)
    ws = store.ws
    refs = list_model_refs(ws, store.model_ws)
    if not refs:
        raise NotFoundError(
            f"workspace {store.model_ws.name}: no trained models (run `python -m core train` first)"
        )
    features, skipped = default_features(ws)
    inputs = store.inputs(refs, features=features, version=_VERSION)
    old = None if force else store.load_json("", MANIFEST, inputs)
    if old is not None and not _missing_results(store.ws, old, model_workspace):
        return {**old, "up_to_date": True}

    def log(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    t0 = time.time()
    done = []
    for attr, pos, neg in features:
        entry = {"attribute": attr, "positive": pos, "negatives": [neg]}
        try:
            log(f"[analyze] {attr}: {pos} vs {neg}: identification over {len(refs)} models")
            ident = identify(ws, attr, pos, [neg], model_workspace=model_workspace, progress=progress)
            compute_grid(ws, attr, pos, [neg], identification=ident, model_workspace=model_workspace)
            log(f"[analyze] {attr}: feature splitting")
            compute_splitting(ws, attr, pos, [neg], identification=ident, model_workspace=model_workspace)
            log(f"[analyze] {attr}: steering the identified latent of every model")
            steering = []
            iterator = ident["models"]
            if progress:
                from tqdm import tqdm

                iterator = tqdm(iterator, desc=f"steer {attr}", file=sys.stderr, leave=False)
            for m in iterator:
                out = run_steering(
                    ws,
                    attr,
                    pos,
                    [neg],
                    model=m["model"],
                    latent=m["latent"],
                    model_workspace=model_workspace,
                )
                steering.append(
                    {
                        "model": m["model"],
                        "latent": m["latent"],
                        "value": out["value"],
                        "classes": out["classes"],
                    }
                )
            entry.update(key=ident["key"], steering=steering, status="done")
        except WriteError:
            raise  # the disk said no: that is the command's error, not this feature's
        except VoxSAEError as exc:
            entry.update(status="skipped", reason=str(exc))
            log(f"[analyze] {attr}: skipped ({exc})")
        done.append(entry)
    log(f"[analyze] label suggestions for {len(refs)} models")
    iterator = refs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(refs, desc="suggestions", file=sys.stderr, leave=False)
    for ref in iterator:
        compute_suggestions(ws, ref.name, model_workspace=model_workspace)
    manifest = {
        "version": _VERSION,
        "key": content_key(inputs),
        "workspace": ws.name,
        "fingerprint": ws.fingerprint,
        "model_workspace": store.model_ws.name,
        "models": [
            {"name": r.name, "arch": r.arch, "d_sae": r.d_sae, "k": r.k, "checksum": r.checksum} for r in refs
        ],
        "paper_model": paper_model([r.name for r in refs]),
        "features": done,
        "skipped": skipped,
        "seconds": round(time.time() - t0, 1),
        "computed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    manifest = store.save_json("", MANIFEST, manifest, inputs)
    return {**manifest, "up_to_date": False}


def add_arguments(parser) -> None:
    parser.add_argument("--workspace", required=True, help="workspace name or path")
    parser.add_argument("--model-workspace", default=None, help="analyse with the SAEs of this workspace")
    parser.add_argument("--force", action="store_true", help="recompute even when nothing changed")


def main(args) -> int:
    from core.analysis.models import warn_unusable_models

    ws = Workspace.open(args.workspace)
    warn_unusable_models(ws, args.model_workspace)
    m = run_analyses(ws, model_workspace=args.model_workspace, force=args.force)
    if m.get("up_to_date"):
        print(f"analyses of {ws.name} are up to date ({len(m['models'])} models); nothing to do")
        return 0
    for f in m["features"]:
        if f["status"] != "done":
            print(f"{f['attribute']}: skipped: {f['reason']}")
            continue
        print(f"{f['attribute']} ({f['positive']} vs {', '.join(f['negatives'])}): done")
    for s in m["skipped"]:
        print(f"skipped {s}")
    print(
        f"analyses written to {ws.analyses_dir} in {m['seconds']} s; `python -m core report --workspace "
        f"{args.workspace}` renders them"
    )
    return 0
