"""Feature identification (paper III-C, V-A): which latent of each SAE detects an attribute value.

Per model: a logistic regression on the latents of the train split; the latent with the largest
positive weight (top 5 kept with their weights); that latent alone as a detector (activation > 0
means positive) on the test split: precision, recall, F1, each with a 95 % confidence interval
from a bootstrap over the test speakers (core.analysis.intervals; 1000 resamples, seed 0), and
the number of test speakers and segments behind them. Cross-check: the single latent with the
best train F1, scored on test. Ceiling: a linear probe on the raw embeddings.

    res = identify(ws, "language", "es", ["en"])     # computed or reused; stored
    res = load_identification(ws, "language", "es")  # what the dashboard calls (None if absent)
    identification_frame(res)                        # one row per model

Command: python -m core identify --workspace NAME --attribute language --positive es [--negative en]
         [--model-workspace W] [--json]
         (a model folder that cannot be used: one `warning: ...` line on stderr naming it and why)
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd

from core.analysis import datasets
from core.analysis.datasets import FeatureDataset, dataset_key, resolve_values, split_hash
from core.analysis.intervals import BootstrapConfig, BootstrapPlan
from core.analysis.models import ModelRef, encode_rows, list_model_refs, warn_unusable_models
from core.analysis.store import ResultStore
from core.constants import IDENTIFICATION_SUBDIR
from core.errors import NotFoundError
from core.workspace.workspace import Workspace

TOP_N = 5
CELL_FIELDS = (
    "precision",
    "precision_lo",
    "precision_hi",
    "recall",
    "recall_lo",
    "recall_hi",
    "f1",
    "n_test_speakers",
    "n_test_segments",
)
"""What a model's result says about its detector on the test split (the grid's cell)."""
_VERSION = 3  # 2: precision/recall intervals and the test speakers behind them; 3: none from one speaker
KIND = IDENTIFICATION_SUBDIR


def detector_scores(active: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 of every column of a boolean matrix `active` [n, L] as a detector
    of `y` [n] (vectorised; equals sklearn's precision_recall_fscore_support, zero_division=0)."""
    a = np.asarray(active, dtype=bool)
    yb = np.asarray(y, dtype=bool)
    tp = a[yb].sum(axis=0).astype(np.float64)
    pred = a.sum(axis=0).astype(np.float64)
    npos = float(yb.sum())
    precision = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    recall = tp / npos if npos else np.zeros_like(tp)
    denom = pred + npos
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return precision, recall, f1


def probe_accuracy_raw(ws: Workspace, ds: FeatureDataset) -> float:
    """Linear probe (standardised logistic regression) on raw embeddings: the ceiling."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_tr = np.asarray(ws.embeddings[ds.train_rows], dtype=np.float32)
    x_te = np.asarray(ws.embeddings[ds.test_rows], dtype=np.float32)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(x_tr, ds.y_train)
    return float((clf.predict(x_te) == ds.y_test).mean())


def identify_model(
    ws: Workspace,
    ref: ModelRef,
    ds: FeatureDataset,
    z_train=None,
    z_test=None,
    plan: BootstrapPlan | None = None,
) -> dict:
    """Identification for one model (see module doc); `plan`: the test split's bootstrap (drawn
    here when not given)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import precision_recall_fscore_support

    if z_train is None:
        z_train = encode_rows(ws, ref, ds.train_rows)
    if z_test is None:
        z_test = encode_rows(ws, ref, ds.test_rows)
    clf = LogisticRegression(max_iter=3000)
    clf.fit(z_train, ds.y_train)
    w = clf.coef_[0]
    order = np.argsort(-w, kind="stable")
    top = [{"latent": int(i), "weight": float(w[i])} for i in order[:TOP_N]]
    latent = int(order[0])
    pred = z_test[:, latent] > 0
    p, r, f, _ = precision_recall_fscore_support(ds.y_test, pred, average="binary", zero_division=0)
    plan = plan or BootstrapPlan.for_test_split(ws, ds)
    # cross-check: best single latent by F1 on train, scored on test
    _, _, f1_train = detector_scores(z_train > 0, ds.y_train)
    best = int(np.argmax(f1_train))
    bp, br, bf = (float(v[0]) for v in detector_scores(z_test[:, [best]] > 0, ds.y_test))
    return {
        "model": ref.name,
        "arch": ref.arch,
        "d_sae": ref.d_sae,
        "k": ref.k,
        "latent": latent,
        "weight": float(w[latent]),
        "top": top,
        "precision": float(p),
        "recall": float(r),
        "f1": float(f),
        **plan.intervals(pred, ds.y_test)._asdict(),
        "n_test_speakers": plan.n_speakers,
        "n_test_segments": int(len(ds.test_rows)),
        "interval_unit": plan.unit,
        "n_test_pos": int(ds.y_test.sum()),
        "n_test_neg": int((~ds.y_test).sum()),
        "latent_probe_accuracy": float(clf.score(z_test, ds.y_test)),
        "best_f1_latent": best,
        "best_f1_precision": bp,
        "best_f1_recall": br,
        "best_f1": bf,
        "model_workspace": ref.workspace.name,
        "checksum": ref.checksum,
    }


def identify(
    ws: Workspace | str,
    attribute: str,
    positive: str,
    negatives=None,
    *,
    model_workspace: Workspace | str | None = None,
    dataset: FeatureDataset | None = None,
    progress: bool = False,
    force: bool = False,
    bootstrap: BootstrapConfig | None = None,
) -> dict:
    """Identify the latent of every model; reuses the stored result of every model whose weights
    did not change, when the workspace content, the dataset split and the `bootstrap` settings
    (default BootstrapConfig()) did not change either."""
    store = ResultStore(ws, model_workspace)
    ws = store.ws
    ds = dataset or FeatureDataset.load_or_build(ws, attribute, positive, negatives)
    refs = list_model_refs(ws, store.model_ws)
    if not refs:
        raise NotFoundError(
            f"workspace {store.model_ws.name}: no trained models (run `python -m core train` first)"
        )
    plan = BootstrapPlan.for_test_split(ws, ds, bootstrap)
    inputs = store.inputs(refs, split=split_hash(ds), version=_VERSION, bootstrap=plan.cfg.key())
    old = None if force else store.load_reusable(KIND, ds.key, inputs)
    previous = {m["model"]: m for m in old["models"]} if old else {}
    probe = old["probe_accuracy"] if old else probe_accuracy_raw(ws, ds)
    results = []
    iterator = refs
    if progress:
        from tqdm import tqdm

        iterator = tqdm(refs, desc=f"identify {ds.key}", file=sys.stderr, leave=False)
    for ref in iterator:
        res = previous.get(ref.name)
        if res is None or res.get("checksum") != ref.checksum:
            res = identify_model(ws, ref, ds, plan=plan)
        results.append({**res, "probe_accuracy": probe})
    out = {
        "version": _VERSION,
        "workspace": ws.name,
        "fingerprint": ws.fingerprint,
        "model_workspace": store.model_ws.name,
        "attribute": ds.attribute,
        "positive": ds.positive,
        "negatives": ds.negatives,
        "classes": list(ds.class_names),
        "key": ds.key,
        "split_hash": inputs["split"],
        "n_train": int(len(ds.train_rows)),
        "n_test": int(len(ds.test_rows)),
        "probe_accuracy": probe,
        "bootstrap": plan.summary(),
        "models": results,
    }
    return store.save_json(KIND, ds.key, out, inputs)


def load_identification(
    ws: Workspace | str, attribute: str, positive: str, negatives=None, model_workspace=None
) -> dict | None:
    """The stored identification result (dict, see `identify`); None when not computed, or when
    the workspace or a model changed since."""
    store = ResultStore(ws, model_workspace)
    negs = resolve_values(store.ws, attribute, positive, negatives)
    return store.load_json(KIND, dataset_key(attribute, str(positive), negs))


def identification_frame(result: dict) -> pd.DataFrame:
    """One row per model: model, arch, d_sae, k, latent, precision, recall, f1, probe_accuracy, ..."""
    rows = [{k: v for k, v in m.items() if k != "top"} for m in result["models"]]
    return pd.DataFrame(rows)


def model_result(result: dict, model: str) -> dict:
    for m in result["models"]:
        if m["model"] == model:
            return m
    raise NotFoundError(
        f"no identification for model {model!r} (models: {', '.join(m['model'] for m in result['models'])})"
    )


def reading(result_model: dict, positive: str) -> str:
    """One-line reading, e.g. 'latent 15 detects es: precision 99.2%, recall 95.5%'."""
    return (
        f"{result_model['model']}: latent {result_model['latent']} detects {positive}: "
        f"precision {100 * result_model['precision']:.1f}%, recall {100 * result_model['recall']:.1f}%"
    )


# -- command -----------------------------------------------------------------------------
JSON_FIELDS = ("model", "arch", "d_sae", "k", "latent", *CELL_FIELDS, "probe_accuracy")


def add_arguments(parser) -> None:
    datasets.add_dataset_arguments(parser)
    parser.add_argument("--force", action="store_true", help="recompute even if stored results match")


def main(args) -> int:
    ws, *feature = datasets.dataset_arguments(args)
    warn_unusable_models(ws, args.model_workspace)
    res = identify(
        ws,
        *feature,
        model_workspace=args.model_workspace,
        progress=not args.json,
        force=args.force,
    )
    if args.json:
        for m in res["models"]:
            obj = {k: m[k] for k in JSON_FIELDS}
            obj.update(
                top=m["top"],
                best_f1_latent=m["best_f1_latent"],
                best_f1=m["best_f1"],
                latent_probe_accuracy=m["latent_probe_accuracy"],
            )
            print(json.dumps(obj))
        return 0
    pos, neg = res["classes"]
    print(
        f"{res['attribute']}: {pos} vs {neg}  (train {res['n_train']}, test {res['n_test']}; "
        f"linear probe on raw embeddings {100 * res['probe_accuracy']:.1f}%)"
    )
    bs = res["bootstrap"]
    unit = f"{bs['n_groups']} test {bs['unit']}s"
    print(f"[lo, hi]: {100 * bs['level']:g}% bootstrap interval over {unit} ({bs['resamples']} resamples)")
    if bs["note"]:
        print(f"note: {bs['note']}")
    print(
        f"{'model':<24}{'latent':>7}{'prec [lo, hi]':>22}{'recall [lo, hi]':>22}{'F1':>7}"
        "   best-F1 latent   top-5 weights"
    )
    for m in res["models"]:
        tops = ", ".join(f"{t['latent']}:{t['weight']:.2f}" for t in m["top"])
        p_ci = f"{100 * m['precision']:.1f} [{100 * m['precision_lo']:.1f}, {100 * m['precision_hi']:.1f}]"
        r_ci = f"{100 * m['recall']:.1f} [{100 * m['recall_lo']:.1f}, {100 * m['recall_hi']:.1f}]"
        print(
            f"{m['model']:<24}{m['latent']:>7}{p_ci:>22}{r_ci:>22}"
            f"{m['f1']:>7.3f}   {m['best_f1_latent']:>5} (F1 {m['best_f1']:.3f})   {tops}"
        )
    return 0
