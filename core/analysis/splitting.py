"""Feature splitting (paper V-B, Fig. 4).

1. Tracks: for an attribute (e.g. language=es) and each (arch, K), across latent dims, the share of
   each subgroup (attribute value x e.g. gender: "es female", "en male", ...) whose samples activate
   the model's identified latent.
2. Split detection: for each pair (smaller SAE S, larger SAE L) of one arch and K, take S's
   identified latent p and the samples P it fires on. A latent c of L is a child of p when it fires on
   enough of P (coverage), mostly inside P (purity) and its decoder direction is close to p's
   (decoder cosine). p has split when >= 2 children each cover a part of P the others do not
   (exclusive coverage); each child is named by the subgroup it captures ("es female").

    res = compute_splitting(ws, "language", "es", subgroup="gender")   # stored
    res = load_splitting(ws, "language", "es")                          # dashboard
    tracks_frame(res); splits_frame(res); splitting_chart(res, k=20)
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

from core.analysis.datasets import FeatureDataset, dataset_key, resolve_values
from core.analysis.models import decoder_affine, encode_rows, list_model_refs
from core.analysis.store import CONTENT_KEY, INPUTS, ResultStore
from core.constants import SPLITTING_SUBDIR
from core.workspace.workspace import Workspace

MIN_COVER = 0.15  # a child fires on at least this share of the parent's samples
MIN_EXCLUSIVE = 0.10  # ... and at least this share that no other child covers
MIN_PURITY = 0.5  # at least half of a child's firing lies inside the parent's samples
MIN_DECODER_COS = 0.2  # decoder direction related to the parent's
_VERSION = 1


def default_subgroup(ws: Workspace, attribute: str) -> str | None:
    cols = ws.segments.columns
    for cand in ("gender", "sex"):
        if cand in cols and cand != attribute:
            return cand
    return None


def _labels(ws: Workspace, ds: FeatureDataset, subgroup: str | None) -> np.ndarray:
    seg = ws.segments
    values = seg[ds.attribute].iloc[ds.rows].astype("string").fillna("?").to_numpy(dtype=object)
    if subgroup is None:
        return values.astype(str)
    sub = seg[subgroup].iloc[ds.rows].astype("string").fillna("?").to_numpy(dtype=object)
    return np.array([f"{a} {b}" for a, b in zip(values, sub, strict=True)])


def detect_splits(
    z_small: np.ndarray,
    parent: int,
    z_large: np.ndarray,
    w_small: np.ndarray,
    w_large: np.ndarray,
    labels: np.ndarray,
    *,
    min_cover: float = MIN_COVER,
    min_exclusive: float = MIN_EXCLUSIVE,
    min_purity: float = MIN_PURITY,
    min_decoder_cos: float = MIN_DECODER_COS,
) -> dict:
    """Children of latent `parent` of the small SAE among the large SAE's latents (see module doc)."""
    par = z_small[:, parent] > 0
    n_par = int(par.sum())
    out = {"parent": int(parent), "n_parent": n_par, "children": [], "split": False}
    if n_par == 0:
        return out
    act = z_large > 0
    inter = act[par].sum(axis=0).astype(float)
    fired = act.sum(axis=0).astype(float)
    cover = inter / n_par
    purity = np.divide(inter, fired, out=np.zeros_like(inter), where=fired > 0)
    wp = w_small[parent] / max(np.linalg.norm(w_small[parent]), 1e-12)
    wl = w_large / np.maximum(np.linalg.norm(w_large, axis=1, keepdims=True), 1e-12)
    dcos = wl @ wp
    cand = np.flatnonzero((cover >= min_cover) & (purity >= min_purity) & (dcos >= min_decoder_cos))
    cand = cand[np.argsort(-cover[cand])]
    children = []
    for c in cand:
        others = [o for o in cand if o != c]
        covered_by_others = act[:, others].any(axis=1) if others else np.zeros(len(par), bool)
        exclusive = float((par & act[:, c] & ~covered_by_others).sum() / n_par)
        mask = par & act[:, c]
        groups, counts = np.unique(labels[mask], return_counts=True)
        share = dict(zip(groups.tolist(), (counts / counts.sum()).round(4).tolist(), strict=True))
        # the subgroup captured: the label with the largest share of the child's samples in P;
        # recall_in_group = the share of that label's samples in P that the child fires on
        top = groups[np.argmax(counts)] if len(groups) else ""
        in_group = par & (labels == top)
        children.append(
            {
                "latent": int(c),
                "cover": float(cover[c]),
                "exclusive_cover": exclusive,
                "purity": float(purity[c]),
                "decoder_cos": float(dcos[c]),
                "captures": str(top),
                "capture_share": float(share.get(top, 0.0)),
                "recall_in_group": float((mask & in_group).sum() / max(in_group.sum(), 1)),
                "by_group": share,
            }
        )
    real = [ch for ch in children if ch["exclusive_cover"] >= min_exclusive]
    out["children"] = children
    out["split"] = len(real) >= 2
    out["split_children"] = [ch["latent"] for ch in real]
    return out


def compute_splitting(
    ws: Workspace | str,
    attribute: str,
    positive: str,
    negatives=None,
    *,
    subgroup: str | None = "auto",
    identification: dict | None = None,
    model_workspace=None,
) -> dict:
    """Tracks + detected splits for every (arch, K) group of models; stored as JSON."""
    from core.analysis.identification import identify

    store = ResultStore(ws, model_workspace)
    ws = store.ws
    if subgroup == "auto":
        subgroup = default_subgroup(ws, attribute)
    elif subgroup is not None:
        ws.attribute_values(subgroup)  # NotFoundError listing the attributes
    ds = FeatureDataset.load_or_build(ws, attribute, positive, negatives)
    if subgroup is not None:
        # a subgroup that the positive samples do not have (music has no gender) names nothing
        sub = ws.segments[subgroup].iloc[ds.rows[ds.y]].astype("string").fillna("").to_numpy(dtype=object)
        if not (sub != "").any():
            subgroup = None
    if identification is None:
        identification = identify(ws, attribute, positive, negatives, model_workspace=model_workspace)
    refs = {r.name: r for r in list_model_refs(ws, store.model_ws)}
    latent_of = {m["model"]: int(m["latent"]) for m in identification["models"]}
    labels = _labels(ws, ds, subgroup)
    groups_all, n_group = np.unique(labels, return_counts=True)
    by_ak: dict[tuple, list] = defaultdict(list)
    for name, ref in refs.items():
        if name in latent_of:
            by_ak[(ref.arch, ref.k)].append(ref)
    tracks, splits = [], []
    z_cache: dict[str, np.ndarray] = {}

    def z_of(ref):
        if ref.name not in z_cache:
            z_cache[ref.name] = encode_rows(ws, ref, ds.rows)
        return z_cache[ref.name]

    for (arch, k), models in sorted(by_ak.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0)):
        models.sort(key=lambda r: r.d_sae)
        for ref in models:
            active = z_of(ref)[:, latent_of[ref.name]] > 0
            for g, n in zip(groups_all, n_group, strict=True):
                m = labels == g
                tracks.append(
                    {
                        "model": ref.name,
                        "arch": arch,
                        "k": k,
                        "d_sae": ref.d_sae,
                        "latent": latent_of[ref.name],
                        "group": str(g),
                        "n": int(n),
                        "n_active": int(active[m].sum()),
                        "fraction": float(active[m].mean()),
                    }
                )
        for i, small in enumerate(models):
            for large in models[i + 1 :]:
                if large.d_sae <= small.d_sae:
                    continue
                det = detect_splits(
                    z_of(small),
                    latent_of[small.name],
                    z_of(large),
                    decoder_affine(small)[0],
                    decoder_affine(large)[0],
                    labels,
                )
                det.update(
                    arch=arch,
                    k=k,
                    small_model=small.name,
                    large_model=large.name,
                    small_d_sae=small.d_sae,
                    large_d_sae=large.d_sae,
                )
                splits.append(det)
    out = {
        "version": _VERSION,
        "attribute": ds.attribute,
        "positive": ds.positive,
        "negatives": ds.negatives,
        "subgroup": subgroup,
        "key": ds.key,
        "fingerprint": ws.fingerprint,
        "groups": {str(g): int(n) for g, n in zip(groups_all, n_group, strict=True)},
        "tracks": tracks,
        "splits": splits,
    }
    inputs = store.inputs(
        refs.values(),
        identification=identification[INPUTS][CONTENT_KEY],
        subgroup=subgroup,
        version=_VERSION,
    )
    return store.save_json(SPLITTING_SUBDIR, ds.key, out, inputs)


def load_splitting(
    ws: Workspace | str, attribute: str, positive: str, negatives=None, model_workspace=None
) -> dict | None:
    """The stored splitting; None when not computed, or when the workspace or a model changed since."""
    store = ResultStore(ws, model_workspace)
    negs = resolve_values(store.ws, attribute, positive, negatives)
    return store.load_json(SPLITTING_SUBDIR, dataset_key(attribute, str(positive), negs))


def tracks_frame(result: dict) -> pd.DataFrame:
    return pd.DataFrame(result["tracks"])


def splits_frame(result: dict, only_splits: bool = True) -> pd.DataFrame:
    """One row per child of a detected split: small/large model, parent, child latent, captures."""
    rows = []
    for s in result["splits"]:
        if only_splits and not s["split"]:
            continue
        for ch in s["children"]:
            if only_splits and ch["latent"] not in s.get("split_children", []):
                continue
            rows.append(
                {
                    "arch": s["arch"],
                    "k": s["k"],
                    "small_model": s["small_model"],
                    "large_model": s["large_model"],
                    "parent": s["parent"],
                    "child": ch["latent"],
                    "captures": ch["captures"],
                    "capture_share": ch["capture_share"],
                    "cover": ch["cover"],
                    "exclusive_cover": ch["exclusive_cover"],
                    "decoder_cos": ch["decoder_cos"],
                }
            )
    return pd.DataFrame(rows)


def is_subgroup_split(s: dict, positive: str) -> bool:
    """A split whose children capture >= 2 different subgroups of the positive value
    (e.g. 'es female' and 'es male')."""
    kids = {
        c["captures"]
        for c in s["children"]
        if c["latent"] in s.get("split_children", []) and c["captures"].startswith(f"{positive} ")
    }
    return bool(s["split"]) and len(kids) >= 2


def is_positive_split(s: dict, positive: str) -> bool:
    """A split with >= 2 children that each capture the positive value (or a subgroup of it)."""
    kids = [
        c
        for c in s["children"]
        if c["latent"] in s.get("split_children", [])
        and (c["captures"] == positive or c["captures"].startswith(f"{positive} "))
    ]
    return bool(s["split"]) and len(kids) >= 2


def first_splits(result: dict, subgroup_only: bool = False) -> list[dict]:
    """Per (arch, K): the first (smallest small-SAE, then smallest large-SAE) split of the positive
    value; with subgroup_only, the first that splits it by subgroup ('es female' / 'es male')."""
    seen, out = set(), []
    for s in sorted(
        result["splits"], key=lambda s: (s["arch"], s["k"] or 0, s["small_d_sae"], s["large_d_sae"])
    ):
        if subgroup_only and not is_subgroup_split(s, result["positive"]):
            continue
        if not is_positive_split(s, result["positive"]):
            continue
        if s["split"] and (s["arch"], s["k"]) not in seen:
            seen.add((s["arch"], s["k"]))
            out.append(s)
    return out


def split_reading(s: dict, positive: str) -> str:
    kids = [c for c in s["children"] if c["latent"] in s.get("split_children", [])]
    parts = ", ".join(
        f"latent {c['latent']} ({c['captures']}, {100 * c['capture_share']:.0f}%)" for c in kids
    )
    return f"{positive} latent {s['parent']} of {s['small_model']} splits in {s['large_model']} into {parts}"


def default_k(result: dict) -> int | None:
    """The K to show: 20 (the paper's) when present, else the K with the most latent dims."""
    tf = tracks_frame(result)
    if tf.empty:
        return None
    ks = tf.groupby("k", dropna=False)["d_sae"].nunique()
    if 20 in ks.index:
        return 20
    return ks.idxmax()


def splitting_chart(result: dict, k: int | None = None, arch: str | None = None):
    """Fig. 4: per subgroup, the share of samples that activate the top latent, across latent dims."""
    import altair as alt

    tf = tracks_frame(result)
    if tf.empty:
        return alt.Chart(pd.DataFrame({"x": []})).mark_point()
    if arch is None:
        arch = "topk" if "topk" in set(tf["arch"]) else tf["arch"].iloc[0]
    if k is None:
        k = default_k({"tracks": tf[tf["arch"] == arch].to_dict("records")})
    sub = tf[(tf["arch"] == arch) & ((tf["k"] == k) if k is not None else tf["k"].isna())].copy()
    sub["percent"] = (100 * sub["fraction"]).round(1)
    sub = sub.rename(columns={"d_sae": "latent dim"})
    return (
        alt.Chart(sub)
        .mark_line(point=True)
        .encode(
            x=alt.X("latent dim:O"),
            y=alt.Y(
                "percent:Q", title="% of samples activating the top latent", scale=alt.Scale(domain=[0, 100])
            ),
            color=alt.Color("group:N", title="subgroup"),
            tooltip=["model", "latent", "group", "n_active", "n", "percent"],
        )
        .properties(
            title=f"{result['positive']} latent across latent dims ({arch}, K={k})", width=360, height=220
        )
    )
