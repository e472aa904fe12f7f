"""`python -m core universality --workspace W --models M1,M2 [--model-workspace W2] [--json]`: are
the features two SAEs find the same ones? (paper VI, future work: across seeds, latent sizes and
embedders.)

The latents of M1 (a model of W, on W's embeddings) and M2 (a model of W2, default W, on W2's
embeddings) are matched by the correlation of their activations over the same segments:

* rows: every segment of W; with --model-workspace W2, the segments whose segment_id is in both
  workspaces and names the same stretch of audio (source, start_s, end_s), M2's activations
  taken from W2's row of that id (the same audio ingested twice, e.g. by two embedders, has the
  same ids). Fewer than MIN_SEGMENTS shared segments is an InputError that says how many;
* correlation: Pearson, latent by latent, over those rows (a latent that never fires there has
  no variance and gets correlation 0 with everything); computed on the sparse codes of
  core.sae.activations (cached latents), so it scales with L0, not with the latent count;
* matching: a one-to-one assignment maximising the summed correlation
  (scipy.optimize.linear_sum_assignment); each matched pair's correlation, and the cosine of
  the two decoder directions where both SAEs read the same embedding space (one workspace, or
  two of the same embedder and dim; otherwise it is skipped and the result says why);
* summary: the mean over the live latents of each SAE of its best correlation in the other
  ("mean max correlation", each way), and for every identified feature (the stored
  identification of DEFAULT_FEATURES, language/es and class/music, of each model in its own
  workspace) its best match in the other SAE and whether it is above UNIVERSAL_CORRELATION.

Matching a model with itself is allowed and gives correlation 1 for every live latent.

    res = universality(ws, "topk-L100-K5", "topk-L200-K5")                         # computed or reused
    res = universality(ws, "topk-L100-K5", "topk-L100-K5", model_workspace="demo-mfcc")
    load_universality(ws, m1, m2, model_workspace=None)   # the stored result, None when absent or stale
    activation_correlation(a, b)                           # [d_a, d_b] Pearson of two sparse matrices

Stored in the one result store (analyses/universality/<M1>~<M2>[@W2].json), keyed on both
workspaces' fingerprints, both models' weights versions and the identification results it read,
so a changed input never returns an old result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from core.analysis.store import ResultStore
from core.constants import DEFAULT_FEATURES
from core.errors import InputError, VoxSAEError
from core.sae.catalog import ModelInfo, get_model
from core.workspace.workspace import Workspace, open_distinct

KIND = "universality"  # analyses/universality/
UNIVERSAL_CORRELATION = 0.7
"""A feature is matched ("universal" between the two SAEs) when its best correlation is above this."""
MIN_SEGMENTS = 30
"""Fewest segments the two activations are compared over: below it a correlation of 0.7 is noise."""
_VERSION = 1


# -- the numbers ---------------------------------------------------------------------------------
def sparse_activations(indices: np.ndarray, values: np.ndarray, d_sae: int):
    """scipy CSR [n, d_sae] of padded (indices, values) codes (core.sae.activations.sparse_codes)."""
    import scipy.sparse

    n = indices.shape[0]
    live = values > 0
    rows = np.broadcast_to(np.arange(n)[:, None], indices.shape)[live]
    return scipy.sparse.csr_matrix(
        (values[live].astype(np.float64), (rows, indices[live].astype(np.int64))), shape=(n, d_sae)
    )


def activation_correlation(a, b) -> np.ndarray:
    """Pearson correlation [d_a, d_b] of the columns of sparse (or dense) a [n, d_a] and b [n, d_b].

    A column without variance (a latent that never fires, or fires equally on every row) gets 0.
    """
    import scipy.sparse

    a, b = scipy.sparse.csr_matrix(a, dtype=np.float64), scipy.sparse.csr_matrix(b, dtype=np.float64)
    n = a.shape[0]
    if b.shape[0] != n:
        raise ValueError(f"activation_correlation: {n} rows against {b.shape[0]}")
    mean_a, mean_b = np.asarray(a.mean(axis=0)).ravel(), np.asarray(b.mean(axis=0)).ravel()
    cov = (a.T @ b).toarray() / n - np.outer(mean_a, mean_b)
    var_a = np.asarray(a.multiply(a).mean(axis=0)).ravel() - mean_a**2
    var_b = np.asarray(b.multiply(b).mean(axis=0)).ravel() - mean_b**2
    # relative floor: a constant column's variance is float round-off, not signal
    sd_a = np.sqrt(np.where(var_a > 1e-12 * np.maximum(mean_a**2, 1e-12), var_a, 0.0))
    sd_b = np.sqrt(np.where(var_b > 1e-12 * np.maximum(mean_b**2, 1e-12), var_b, 0.0))
    denom = np.outer(sd_a, sd_b)
    corr = np.divide(cov, denom, out=np.zeros_like(cov), where=denom > 0)
    return np.clip(corr, -1.0, 1.0)


def match_latents(corr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one assignment (rows, cols) of latents maximising the summed correlation."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(corr, maximize=True)
    return rows.astype(np.int64), cols.astype(np.int64)


def decoder_cosine(w_a: np.ndarray, w_b: np.ndarray) -> np.ndarray:
    """Cosine [d_a, d_b] between the decoder directions (rows) of two SAEs of one embedding space."""
    na = w_a / np.maximum(np.linalg.norm(w_a, axis=1, keepdims=True), 1e-12)
    nb = w_b / np.maximum(np.linalg.norm(w_b, axis=1, keepdims=True), 1e-12)
    return np.clip(na @ nb.T, -1.0, 1.0)


# -- what is compared ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Side:
    """One SAE of the comparison: the model and the workspace whose embeddings it encodes."""

    ws: Workspace
    model: ModelInfo

    def describe(self) -> dict:
        return {
            "model": self.model.name,
            "workspace": self.ws.name,
            "workspace_root": str(self.ws.root),
            "embedder": self.ws.embedder,
            "dim": self.ws.dim,
            "d_sae": self.model.d_sae,
            "k": self.model.k,
        }


def parse_models(text: str) -> tuple[str, str]:
    """'M1,M2' -> (M1, M2); InputError unless exactly two non-empty names."""
    names = [n.strip() for n in str(text).split(",")]
    if any(not n for n in names):
        raise InputError(f"--models {text!r}: an empty model name; give two models as M1,M2")
    if len(names) != 2:
        got = "one model" if len(names) == 1 else f"{len(names)} models"
        raise InputError(
            f"--models {text!r}: need exactly two models to compare, as M1,M2, got {got} "
            "(a model may be given twice: it then matches itself)"
        )
    return names[0], names[1]


def shared_rows(ws_a: Workspace, ws_b: Workspace) -> tuple[np.ndarray, np.ndarray, dict]:
    """(rows of ws_a, rows of ws_b) of the same segments, in ws_a's order, and how they were found.

    Same workspace: every row. Otherwise the segment ids in both whose (source, start_s, end_s)
    agree; an id naming another stretch of audio in the other workspace is not the same segment.
    InputError when fewer than MIN_SEGMENTS remain.
    """
    import pandas as pd

    if ws_b.root == ws_a.root:
        rows_a = rows_b = np.arange(len(ws_a), dtype=np.int64)
        found = {"segments": len(ws_a), "other_audio": 0}
    else:
        seg_a, seg_b = ws_a.segments, ws_b.segments
        pos = pd.Index(seg_b["segment_id"].astype(str)).get_indexer(seg_a["segment_id"].astype(str))
        rows_a = np.flatnonzero(pos >= 0)
        rows_b = pos[rows_a].astype(np.int64)
        a_at, b_at = seg_a.iloc[rows_a], seg_b.iloc[rows_b]
        same = a_at["source"].astype(str).to_numpy() == b_at["source"].astype(str).to_numpy()
        for col in ("start_s", "end_s"):
            same &= np.isclose(a_at[col].to_numpy(float), b_at[col].to_numpy(float), atol=1e-3)
        found = {"segments": int(same.sum()), "other_audio": int((~same).sum())}
        rows_a, rows_b = rows_a[same], rows_b[same]
    if found["segments"] < MIN_SEGMENTS:
        if ws_b.root == ws_a.root:
            where = f"workspace {ws_a.name} has {len(ws_a)} segment(s)"
        else:
            where = (
                f"workspaces {ws_a.name} ({len(ws_a)} segments) and {ws_b.name} ({len(ws_b)} segments) "
                f"share {found['segments']} segment id(s)"
            )
            if found["other_audio"]:
                where += f" (and {found['other_audio']} id(s) that name another stretch of audio in each)"
        raise InputError(
            f"{where}: matching latents needs at least {MIN_SEGMENTS} segments seen by both models "
            "(ingest the same audio folder into both workspaces)"
        )
    return rows_a, rows_b, found


def _codes(side: Side, rows: np.ndarray):
    from core.sae.activations import sparse_codes

    idx, val = sparse_codes(side.ws, side.model.name)
    return sparse_activations(idx[rows], val[rows], side.model.d_sae)


def _decoders(a: Side, b: Side) -> tuple[np.ndarray | None, str | None]:
    """(decoder cosine [d_a, d_b], None) where both SAEs read one embedding space, else (None, why)."""
    from core.analysis.models import decoder_affine

    same_space = a.ws.root == b.ws.root or (a.ws.embedder == b.ws.embedder and a.ws.dim == b.ws.dim)
    if not same_space:
        return None, (
            f"decoder cosine skipped: {b.model.name} reads {b.ws.embedder} embeddings ({b.ws.dim}-d, "
            f"workspace {b.ws.name}) and {a.model.name} reads {a.ws.embedder} embeddings "
            f"({a.ws.dim}-d, workspace {a.ws.name}): not one embedding space"
        )
    try:
        w_a, _ = decoder_affine(a.model)
        w_b, _ = decoder_affine(b.model)
    except InputError as exc:
        return None, f"decoder cosine skipped: {exc}"
    return decoder_cosine(w_a, w_b), None


# -- identified features ---------------------------------------------------------------------------
def identified_latents(side: Side) -> tuple[dict[str, dict], dict[str, str | None], list[str]]:
    """({'attr=pos': identification of this model}, {'attr=pos': stored result's key}, notes) for
    DEFAULT_FEATURES, from the stored identification of this model's own workspace."""
    from core.analysis.identification import load_identification

    found: dict[str, dict] = {}
    keys: dict[str, str | None] = {}
    notes: list[str] = []
    for attr, pos, neg in DEFAULT_FEATURES:
        name = f"{attr}={pos}"
        try:
            res = load_identification(side.ws, attr, pos, [neg])
        except VoxSAEError:  # the workspace has no such attribute or value
            keys[name] = None
            continue
        keys[name] = (res or {}).get("inputs", {}).get("content_key")
        entry = next((m for m in (res or {}).get("models", []) if m["model"] == side.model.name), None)
        if entry is None:
            notes.append(
                f"{name}: no identification of {side.model.name} in workspace {side.ws.name} "
                f"(run `python -m core analyze --workspace {side.ws.name}`)"
            )
            continue
        found[name] = entry
    return found, keys, notes


def _feature_rows(this: Side, other: Side, own: dict, theirs: dict, corr: np.ndarray, partner) -> list:
    """One row per identified feature of `this`: its latent's best match in `other`."""
    out = []
    for name, ident in own.items():
        latent = int(ident["latent"])
        best = int(np.argmax(corr[latent])) if corr.shape[1] else -1
        best_corr = float(corr[latent, best]) if best >= 0 else 0.0
        other_latent = theirs.get(name, {}).get("latent")
        out.append(
            {
                "feature": name,
                "model": this.model.name,
                "workspace": this.ws.name,
                "latent": latent,
                "precision": float(ident["precision"]),
                "recall": float(ident["recall"]),
                "other_model": other.model.name,
                "other_workspace": other.ws.name,
                "match_latent": best,
                "match_correlation": best_corr,
                "assigned_latent": partner.get(latent),
                "assigned_correlation": (float(corr[latent, partner[latent]]) if latent in partner else None),
                "other_identified_latent": None if other_latent is None else int(other_latent),
                "universal": best_corr >= UNIVERSAL_CORRELATION,
            }
        )
    return out


# -- the analysis ------------------------------------------------------------------------------------
def _sides(ws, m1: str, m2: str, model_workspace) -> tuple[Side, Side]:
    ws_a = Workspace.of(ws)
    ws_b = ws_a if model_workspace is None else Workspace.of(model_workspace)
    if ws_b.root == ws_a.root:
        ws_b = ws_a
    return Side(ws_a, get_model(ws_a, m1)), Side(ws_b, get_model(ws_b, m2))


def _inputs(store: ResultStore, a: Side, b: Side, ident_keys: dict) -> dict:
    return store.inputs(
        (),
        model_a={"name": a.model.name, "version": a.model.version},
        model_b={"name": b.model.name, "version": b.model.version, "fingerprint": b.ws.fingerprint},
        identification=ident_keys,
        threshold=UNIVERSAL_CORRELATION,
        version=_VERSION,
    )


def _same_sae(a: Side, b: Side) -> bool:
    return a.ws.root == b.ws.root and a.model.name == b.model.name


def _result_name(a: Side, b: Side) -> str:
    return f"{a.model.name}~{b.model.name}"


def _prepare(ws, m1, m2, model_workspace):
    a, b = _sides(ws, m1, m2, model_workspace)
    store = ResultStore(a.ws, b.ws)
    ident_a, keys_a, notes_a = identified_latents(a)
    ident_b, keys_b, notes_b = identified_latents(b)
    inputs = _inputs(store, a, b, {"a": keys_a, "b": keys_b})
    return a, b, store, inputs, (ident_a, ident_b, notes_a + notes_b)


def load_universality(ws, m1: str, m2: str, model_workspace=None) -> dict | None:
    """The stored comparison of M1 (of ws) and M2 (of model_workspace, default ws); None when never
    computed or when any input changed since (a workspace, a model, an identification)."""
    a, b, store, inputs, _ = _prepare(ws, m1, m2, model_workspace)
    return store.load_json(KIND, _result_name(a, b), inputs)


def universality(ws, m1: str, m2: str, *, model_workspace=None, force: bool = False) -> dict:
    """Match the latents of M1 and M2 (module docstring); stored, reused while nothing changed."""
    a, b, store, inputs, (ident_a, ident_b, notes) = _prepare(ws, m1, m2, model_workspace)
    name = _result_name(a, b)
    stored = None if force else store.load_json(KIND, name, inputs)
    if stored is not None:
        return stored
    rows_a, rows_b, found = shared_rows(a.ws, b.ws)
    codes_a, codes_b = _codes(a, rows_a), _codes(b, rows_b)
    corr = activation_correlation(codes_a, codes_b)
    # live: fires on at least one of the rows (a dead latent has nothing to match)
    live_a, live_b = codes_a.getnnz(axis=0) > 0, codes_b.getnnz(axis=0) > 0
    ra, rb = match_latents(corr)
    cos, cos_skipped = _decoders(a, b)
    pairs = [
        {
            "latent_a": int(i),
            "latent_b": int(j),
            "correlation": float(corr[i, j]),
            "decoder_cosine": None if cos is None else float(cos[i, j]),
            "live": bool(live_a[i] and live_b[j]),
        }
        for i, j in zip(ra, rb, strict=True)
    ]
    pairs.sort(key=lambda p: (-p["correlation"], p["latent_a"]))
    best_a, best_b = corr.argmax(axis=1), corr.argmax(axis=0)
    partner_a = {int(i): int(j) for i, j in zip(ra, rb, strict=True)}
    partner_b = {int(j): int(i) for i, j in zip(ra, rb, strict=True)}
    result = {
        "version": _VERSION,
        "a": a.describe(),
        "b": b.describe(),
        "segments": found["segments"],
        "segments_other_audio": found["other_audio"],
        "live_a": int(live_a.sum()),
        "live_b": int(live_b.sum()),
        "mean_max_correlation_a_to_b": _mean_max(corr, live_a, axis=1),
        "mean_max_correlation_b_to_a": _mean_max(corr, live_b, axis=0),
        "pairs_above_threshold": sum(p["correlation"] >= UNIVERSAL_CORRELATION for p in pairs),
        "threshold": UNIVERSAL_CORRELATION,
        "decoder_cosine": cos is not None,
        "decoder_cosine_skipped": cos_skipped,
        "pairs": pairs,
        "best_a": [[int(j), float(corr[i, j])] for i, j in enumerate(best_a)],
        "best_b": [[int(i), float(corr[i, j])] for j, i in enumerate(best_b)],
        "features": _feature_rows(a, b, ident_a, ident_b, corr, partner_a)
        + ([] if _same_sae(a, b) else _feature_rows(b, a, ident_b, ident_a, corr.T, partner_b)),
        "not_identified": notes,
    }
    return store.save_json(KIND, name, result, inputs)


def _mean_max(corr: np.ndarray, live: np.ndarray, axis: int) -> float | None:
    """Mean over the live latents of one side of their best correlation in the other (None: none live)."""
    if not live.any() or corr.size == 0:
        return None
    best = corr.max(axis=axis)
    return float(best[live].mean())


# -- the report's question: which identified features are universal? ------------------------------
def feature_universality(ws, model: str, *, across=()) -> dict:
    """Are the identified features (language=es, class=music) of `model` found again by other SAEs?

    Compared with (a) the other latent sizes of `model`'s architecture and K in the same workspace
    ("same embedder": across SAEs) and (b) every usable model of each workspace in `across`
    ("other embedder": the same audio embedded another way, matched by segment id). Each
    comparison is one `universality` result (stored, reused while its inputs are unchanged).
    Returns {"model", "rows": [one per feature x compared model], "features": {feature: verdict}}:
    a feature is universal across SAEs when its best match in every other size is above
    UNIVERSAL_CORRELATION, and across embedders when some model of every `across` workspace
    matches it above it (an SAE of another embedder may spend several latents on what one
    latent here holds; the best single match is the measure)."""
    from core.sae.catalog import list_models

    ws = Workspace.of(ws)
    mine = get_model(ws, model)
    pairs: list[tuple[str, object, str]] = [
        ("same embedder", None, m.name)
        for m in list_models(ws)
        if m.arch == mine.arch and m.k == mine.k and m.d_sae != mine.d_sae
    ]
    for other in across:
        other_ws = Workspace.of(other)
        if other_ws.root == ws.root:
            raise InputError(f"universality: --across {other}: is the workspace itself; name another one")
        if other_ws.embedder == ws.embedder:  # its SAEs would be reported as another embedder's
            raise InputError(
                f"universality: --across {other}: workspace {other_ws.name} is embedded with "
                f"{other_ws.embedder!r} too; --across compares another embedder"
            )
        pairs += [("other embedder", other_ws, m.name) for m in list_models(other_ws)]
    rows: list[dict] = []
    for kind, other_ws, other_model in pairs:
        res = universality(ws, model, other_model, model_workspace=other_ws)
        for f in res["features"]:
            if f["model"] != model or f["workspace"] != ws.name:
                continue  # the other side's features matched back: not this question
            rows.append(
                {
                    "feature": f["feature"],
                    "latent": f["latent"],
                    "comparison": kind,
                    "other_workspace": res["b"]["workspace"],
                    "other_embedder": res["b"]["embedder"],
                    "other_model": other_model,
                    "match_latent": f["match_latent"],
                    "match_correlation": f["match_correlation"],
                    "universal": f["universal"],
                    "segments": res["segments"],
                }
            )
    verdicts: dict[str, dict] = {}
    for feature in dict.fromkeys(r["feature"] for r in rows):
        mine_rows = [r for r in rows if r["feature"] == feature]
        same = [r for r in mine_rows if r["comparison"] == "same embedder"]
        other = [r for r in mine_rows if r["comparison"] == "other embedder"]
        per_ws: dict[str, float] = {}
        for r in other:
            per_ws[r["other_workspace"]] = max(per_ws.get(r["other_workspace"], -1.0), r["match_correlation"])
        verdicts[feature] = {
            "latent": mine_rows[0]["latent"],
            "sizes_matched": sum(r["universal"] for r in same),
            "sizes": len(same),
            "across_sizes": bool(same) and all(r["universal"] for r in same),
            "best_other_embedder": per_ws,
            "across_embedders": (
                None if not per_ws else all(c >= UNIVERSAL_CORRELATION for c in per_ws.values())
            ),
        }
    return {"model": model, "workspace": ws.name, "threshold": UNIVERSAL_CORRELATION, "rows": rows,
            "features": verdicts}  # fmt: skip


def check_across(ws: Workspace, names) -> tuple[Workspace, ...]:
    """The workspaces `report --across` names, opened and checked before any work, each refusal
    naming `--across NAME`: it exists, is not `ws` itself nor named twice, is of another embedder, has a usable model (a
    model folder left out is said on stderr, as every command does) and shares at least
    MIN_SEGMENTS segments with `ws` (shared_rows). Without this a workspace of no models, or of
    only unusable ones, read as 'no other embedder compared', and another corpus failed after
    the whole report's analyses had run."""
    from core.analysis.models import warn_unusable_models

    out = open_distinct(
        ws,
        names,
        "report: --across",
        itself="the workspace itself",
        listed="named (as {name})",
        once="name each once",
    )
    for name, other in zip(names, out, strict=True):
        if other.embedder == ws.embedder:  # its SAEs would be reported as "another embedder"
            raise InputError(
                f"report: --across {name}: workspace {other.name} is embedded with {other.embedder!r} too; "
                "--across compares another embedder of the same audio (for two workspaces of one embedder "
                "use `python -m core universality --model-workspace`)"
            )
        try:
            if not warn_unusable_models(other):
                raise InputError(
                    f"workspace {other.name} has no trained models (run `python -m core train --workspace "
                    f"{other.name}`)"
                )
            shared_rows(ws, other)
        except VoxSAEError as exc:
            raise type(exc)(f"report: --across {name}: {exc}") from None
    return tuple(out)


def universality_reading(summary: dict) -> str:
    """One sentence per feature: universal across SAEs? across embedders?"""
    out = []
    for feature, v in summary["features"].items():
        sizes = (
            f"matched above {summary['threshold']:g} in {v['sizes_matched']} of {v['sizes']} other latent sizes"
            if v["sizes"]
            else "no other latent size to compare"
        )
        if v["across_embedders"] is None:
            emb = "no other embedder compared"
        else:
            best = ", ".join(f"{w} {c:.2f}" for w, c in v["best_other_embedder"].items())
            emb = f"{'universal' if v['across_embedders'] else 'not universal'} across embedders (best match: {best})"
        out.append(f"{feature} (latent {v['latent']} of {summary['model']}): {sizes}; {emb}")
    return "; ".join(out) if out else f"{summary['model']}: no identified feature to compare"


def universality_chart(summary: dict):
    """Best match of each identified feature in each compared SAE, the threshold as a rule."""
    import altair as alt
    import pandas as pd

    df = pd.DataFrame(summary["rows"])
    if df.empty:
        return None
    df["compared"] = df["other_workspace"] + " / " + df["other_model"]
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(
            x=alt.X("compared:N", title="compared SAE (workspace / model)", sort=None),
            y=alt.Y("match_correlation:Q", title="best match correlation", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("comparison:N", title=""),
            tooltip=[
                "feature",
                "other_model",
                "other_embedder",
                "match_latent",
                alt.Tooltip("match_correlation:Q", format=".2f"),
            ],  # fmt: skip
        )
    )
    rule = alt.Chart().mark_rule(strokeDash=[4, 4]).encode(y=alt.datum(summary["threshold"]))
    return (
        alt.layer(bars, rule, data=df)
        .facet(row=alt.Row("feature:N", title=None))
        .properties(title=f"Is each feature of {summary['model']} found again by other SAEs?")
    )


# -- command ---------------------------------------------------------------------------------------
PAIRS_SHOWN = 20


def add_arguments(parser) -> None:
    parser.add_argument(
        "--workspace", required=True, help="workspace of the first model (its segments are matched)"
    )
    parser.add_argument(
        "--models", required=True, metavar="M1,M2", help="the two models to compare (one may be given twice)"
    )
    parser.add_argument(
        "--model-workspace",
        default=None,
        help="workspace of M2 (default: --workspace), e.g. the same audio embedded by another embedder",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--force", action="store_true", help="recompute even if the stored result is fresh")


def _text(res: dict) -> list[str]:
    a, b = res["a"], res["b"]
    two = a["workspace_root"] != b["workspace_root"]

    def label(model: str, workspace: str) -> str:  # a model's name alone is ambiguous across workspaces
        return f"{model}@{workspace}" if two else model

    la, lb = label(a["model"], a["workspace"]), label(b["model"], b["workspace"])
    lines = [
        f"universality: {a['model']} ({a['workspace']}, {a['embedder']} {a['dim']}-d) vs "
        f"{b['model']} ({b['workspace']}, {b['embedder']} {b['dim']}-d), over {res['segments']} segments",
        f"  live latents: {res['live_a']} of {a['d_sae']} and {res['live_b']} of {b['d_sae']}; mean max "
        f"correlation {_fmt(res['mean_max_correlation_a_to_b'])} ({la} -> {lb}), "
        f"{_fmt(res['mean_max_correlation_b_to_a'])} ({lb} -> {la})",
        f"  {res['pairs_above_threshold']} of {len(res['pairs'])} matched pairs correlate >= {res['threshold']}",
    ]
    if res["decoder_cosine_skipped"]:
        lines.append(f"  {res['decoder_cosine_skipped']}")
    lines.append(f"  matched latents (assignment on activation correlation), best {PAIRS_SHOWN}:")
    head = f"    {'latent_a':>8} {'latent_b':>8} {'corr':>7}"
    lines.append(head + ("  dec.cos" if res["decoder_cosine"] else ""))
    for p in res["pairs"][:PAIRS_SHOWN]:
        cos = f"  {p['decoder_cosine']:>7.3f}" if p["decoder_cosine"] is not None else ""
        lines.append(f"    {p['latent_a']:>8} {p['latent_b']:>8} {p['correlation']:>7.3f}{cos}")
    if len(res["pairs"]) > PAIRS_SHOWN:
        lines.append(f"    ... {len(res['pairs']) - PAIRS_SHOWN} more pairs (--json)")
    lines.append(f"  identified features (a match >= {res['threshold']} is universal):")
    for f in res["features"]:
        this, that = label(f["model"], f["workspace"]), label(f["other_model"], f["other_workspace"])
        verdict = "universal" if f["universal"] else "no match"
        own = f["other_identified_latent"]
        agrees = "" if own is None else f"; {that} identifies {f['feature']} as latent {own}"
        lines.append(
            f"    {f['feature']}: {this} latent {f['latent']} -> {that} latent {f['match_latent']} "
            f"(corr {f['match_correlation']:.3f}): {verdict}{agrees}"
        )
    if not res["features"]:
        lines.append("    none identified in either workspace")
    lines += [f"    {note}" for note in res["not_identified"]]
    return lines


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main(args) -> int:
    m1, m2 = parse_models(args.models)
    ws = Workspace.open(args.workspace)
    res = universality(ws, m1, m2, model_workspace=args.model_workspace, force=args.force)
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "inputs"}))
        return 0
    print("\n".join(_text(res)))
    store = ResultStore(ws, args.model_workspace)
    print(f"wrote {store.path(KIND, f'{m1}~{m2}')}")
    return 0
