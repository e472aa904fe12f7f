"""`python -m core report --workspace NAME`: analyses/report.html + analyses/report.json.

The paper's figures and tables regenerated on this workspace, each with a one-line reading:
Tables I-II (the feature datasets), Figs. 2-3 (precision/recall grid), Fig. 4 (feature splitting),
Tables III-IV and Figs. 5-6 (steering), label suggestions, paper V-D's open question ("Continuous
attributes: is there binning?", core.analysis.continuous: a figure per measured attribute for the
suggestions' model, and how many models bin it), and a check of the paper's claims.

The HTML is self-contained and works offline: charts are inline SVG rendered with vl-convert
(when installed), every chart's Vega-Lite spec is embedded as JSON, and every figure also has a
plain HTML table. Runs `analyze` first (a no-op when its results are up to date). Model folders
that cannot be used are named on stderr and in the report's "Not analysed" section.

    report = build_report(ws)        # the dict written to report.json
    load_report(ws)                  # the stored report.json (None if never written)
"""

from __future__ import annotations

import html
import math
import time

import pandas as pd

from core import atomic
from core.analysis.grid import BAR, lower_bounds_reach
from core.analysis.seeds import load_seed_spread, spread_text
from core.analysis.store import CONTENT_KEY, INPUTS, ResultStore
from core.constants import REPORT_HTML, REPORT_JSON
from core.workspace.workspace import Workspace

CI_RULE = "lower bounds of the 95% CIs"  # how a cell is judged at the bar (core.analysis.grid.at_bar)


def _pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * float(x):.1f}%"


def focus_model(ident: dict, paper: str | None) -> dict:
    """The model whose latent the report details: the paper's cell when trained, else the best cell."""
    models = ident["models"]
    if paper:
        for m in models:
            if m["model"] == paper:
                return m
    ok = [m for m in models if lower_bounds_reach(m["precision_lo"], m["recall_lo"])]
    pool = ok or models
    return max(pool, key=lambda m: (m["f1"], -m["d_sae"]))


def _feature_section(ws: Workspace, f: dict, paper: str | None) -> dict:
    from core.analysis.datasets import load_feature_dataset
    from core.analysis.grid import at_bar, best_cell, ci_text, grid_frame, grid_table, interval_table
    from core.analysis.identification import load_identification
    from core.analysis.splitting import first_splits, is_subgroup_split, load_splitting, split_reading
    from core.analysis.steering import load_steering

    attr, pos, negs = f["attribute"], f["positive"], f["negatives"]
    ident = load_identification(ws, attr, pos, negs)
    ds = load_feature_dataset(ws, attr, pos, negs)
    grid = grid_frame(ident)
    sec: dict = {"attribute": attr, "positive": pos, "negatives": negs, "classes": ident["classes"]}
    sub = "gender" if "gender" in ws.segments.columns and attr != "gender" else None
    counts = ds.counts(ws, by=sub if attr == "language" else None)
    sec["dataset"] = {
        "table": counts.reset_index().to_dict("records"),
        "n_train": int(len(ds.train_rows)),
        "n_test": int(len(ds.test_rows)),
        "notes": ds.notes,
        "reading": (
            f"{pos} vs {', '.join(negs)}: {len(ds.train_rows)} train and {len(ds.test_rows)} test samples "
            f"from disjoint speakers ({int(ds.y_test.sum())} + {int((~ds.y_test).sum())} in test)"
        ),
    }
    fm = focus_model(ident, paper)
    sec["identification"] = {
        "probe_accuracy": ident["probe_accuracy"],
        "focus": {k: fm[k] for k in ("model", "latent", "precision", "recall", "f1", "top")},
        "models": [{k: v for k, v in m.items() if k not in ("checksum",)} for m in ident["models"]],
        "reading": (
            f"{fm['model']}: latent {fm['latent']} detects {pos}: precision {_pct(fm['precision'])}, "
            f"recall {_pct(fm['recall'])} (a linear probe on the raw embeddings reaches "
            f"{_pct(ident['probe_accuracy'])} accuracy)"
        ),
    }
    cell = best_cell(grid, BAR, BAR)
    n_ok = int(at_bar(grid, BAR, BAR).sum())
    best_any = grid.sort_values("f1", ascending=False).iloc[0]
    shown = cell if cell is not None else best_any
    scores = (
        f"precision {ci_text(shown['precision'], shown['precision_lo'], shown['precision_hi'])}%, "
        f"recall {ci_text(shown['recall'], shown['recall_lo'], shown['recall_hi'])}%"
    )
    behind = ident["bootstrap"]
    sec["grid"] = {
        "precision": grid_table(grid, "precision").reset_index().to_dict("records"),
        "recall": grid_table(grid, "recall").reset_index().to_dict("records"),
        "intervals": interval_table(grid).to_dict("records"),
        "bootstrap": behind,
        "cells_at_bar": n_ok,
        "bar_rule": CI_RULE,
        "n_models": len(grid),
        "best_cell": None
        if cell is None
        else {
            k: _py(cell[k]) for k in ("model", "latent", "precision", "precision_lo", "recall", "recall_lo")
        },
        "reading": (
            f"{n_ok} of {len(grid)} models have a {pos} latent whose precision and recall {CI_RULE} "
            f"are >= 90%; best: {cell['model']} latent {int(cell['latent'])} ({scores})"
            if cell is not None
            else f"no model's {pos} latent has precision and recall {CI_RULE} >= 90%; best F1: "
            f"{best_any['model']} latent {int(best_any['latent'])} ({scores})"
        )
        + f"; {behind['n_groups']} test {behind['unit']}s, {int(shown['n_test_segments'])} test segments"
        + (f" ({behind['note']})" if behind["note"] else ""),
    }
    split = load_splitting(ws, attr, pos, negs)
    if split is not None:
        by_sub = first_splits(split, subgroup_only=True)
        firsts = by_sub or first_splits(split)
        sec["splitting"] = {
            "subgroup": split["subgroup"],
            "first_splits": [
                {
                    k: s[k]
                    for k in (
                        "arch",
                        "k",
                        "small_model",
                        "large_model",
                        "parent",
                        "split_children",
                        "children",
                    )
                }
                for s in firsts
            ],
            "n_pairs": len(split["splits"]),
            "n_split": sum(1 for s in split["splits"] if s["split"]),
            "n_subgroup_split": sum(1 for s in split["splits"] if is_subgroup_split(s, pos)),
            "reading": (
                "; ".join(split_reading(s, pos) for s in firsts[:3])
                if firsts
                else f"no split of the {pos} latent detected across latent sizes"
            ),
        }
    steer = load_steering(ws, attr, pos, fm["model"], latent=fm["latent"], negatives=negs)
    all_steer = f.get("steering", [])
    n_flip = sum(1 for s in all_steer if _flips(s["classes"], ident["classes"]))
    if steer is not None:
        c = steer["classes"]
        p, n = ident["classes"]
        flips = _flips(c, ident["classes"])
        spk = ", ".join(
            f"{cls} {c[cls]['speaker_cos_change']:+.3f}"
            for cls in (p, n)
            if c[cls].get("speaker_cos_change") is not None
        )
        sec["steering"] = {
            "model": steer["model"],
            "latent": steer["latent"],
            "value": steer["value"],
            "classes": c,
            "flips_both": flips,
            "models_flipping_both": n_flip,
            "n_models": len(all_steer),
            "reading": (
                f"{steer['model']} latent {steer['latent']} (a = {steer['value']:g}): deactivating it moves mean "
                f"delta_s of {p} from {c[p]['mean_before']:+.3f} to {c[p]['mean_after']:+.3f}; activating it moves "
                f"{n} from {c[n]['mean_before']:+.3f} to {c[n]['mean_after']:+.3f} "
                f"({'both flip' if flips else 'not both flip'}); cosine to own speaker centroid changes by "
                f"{spk or 'n/a'}. Mean delta_s flips for both classes in {n_flip} of {len(all_steer)} models."
            ),
        }
        sec["_steering_full"] = steer
    sec["_grid_frame"] = grid
    sec["_splitting_full"] = split
    return sec


def _flips(classes: dict, names) -> bool:
    p, n = names
    return (
        classes[p]["mean_before"] > 0 > classes[p]["mean_after"]
        and classes[n]["mean_before"] < 0 < classes[n]["mean_after"]
    )


def _py(v):
    if hasattr(v, "item"):
        return v.item()
    return v


def build_report(
    ws: Workspace, *, run: bool = True, progress: bool = True, across: tuple = ()
) -> tuple[dict, dict]:
    """(report dict for report.json, chart objects by id). Runs `analyze` first when `run`.
    `across`: workspaces of the same audio embedded by other embedders, whose SAEs the
    universality section compares with this workspace's (core.analysis.universality)."""
    from core.analysis.analyze import load_manifest, run_analyses
    from core.analysis.models import scan_model_refs
    from core.analysis.suggestions import load_suggestions

    manifest = run_analyses(ws, progress=progress) if run else load_manifest(ws)
    if manifest is None:
        from core.errors import NotFoundError

        raise NotFoundError(f"workspace {ws.name}: no analyses yet (run `python -m core analyze`)")
    paper = manifest.get("paper_model")
    report: dict = {
        "workspace": ws.summary(),
        "fingerprint": ws.fingerprint,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": manifest["models"],
        "paper_model": paper,
        "features": [],
        "skipped": manifest.get("skipped", [])
        + [f"{f['attribute']}: {f.get('reason')}" for f in manifest["features"] if f["status"] != "done"]
        + [f"model {p.name}: {p.reason}" for p in scan_model_refs(ws)[1] if p.skipped],
    }
    charts: dict = {}
    for f in manifest["features"]:
        if f["status"] != "done":
            continue
        sec = _feature_section(ws, f, paper)
        key = f"{sec['attribute']}"
        from core.analysis.grid import grid_chart

        charts[f"grid-{key}"] = grid_chart(sec.pop("_grid_frame"))
        split = sec.pop("_splitting_full")
        if split is not None and split["tracks"]:
            from core.analysis.splitting import splitting_chart

            charts[f"split-{key}"] = splitting_chart(split)
        steer = sec.pop("_steering_full", None)
        if steer is not None:
            from core.analysis.steering import steering_chart

            charts[f"steer-{key}"] = steering_chart(steer)
        report["features"].append(sec)
    # label suggestions for the focus model of the first feature (or the paper's model)
    sugg_model = paper or (
        report["features"][0]["identification"]["focus"]["model"] if report["features"] else None
    )
    if sugg_model is None and manifest["models"]:
        sugg_model = manifest["models"][0]["name"]
    if sugg_model:
        df = load_suggestions(ws, sugg_model)
        if df is not None and len(df):
            top = df[df["rank"] == 1].sort_values("f1", ascending=False).head(15)
            report["suggestions"] = {
                "model": sugg_model,
                "top": top.drop(columns=["model"]).to_dict("records"),
                "reading": (
                    f"{sugg_model}: the latents whose activity best matches a metadata value; best: "
                    f"latent {int(top.iloc[0]['latent'])} = {top.iloc[0]['attribute']}={top.iloc[0]['value']} "
                    f"(F1 {top.iloc[0]['f1']:.2f})"
                ),
            }
    if sugg_model:  # paper V-D's open question, on the same model
        from core.analysis.continuous import report_section

        sec, figs = report_section(ws, sugg_model, [m["name"] for m in manifest["models"]])
        if sec is not None:
            report["continuous"], charts = sec, {**charts, **figs}
    report["claims"] = claims(report)
    uni_model = paper or sugg_model
    if uni_model:
        from core.analysis.universality import feature_universality, universality_chart, universality_reading

        uni = feature_universality(ws, uni_model, across=across)
        uni["across"] = [Workspace.of(w).name for w in across]
        uni["reading"] = universality_reading(uni)
        report["universality"] = uni
        chart = universality_chart(uni)
        if chart is not None:
            charts["universality"] = chart
    spread = load_seed_spread(ws)
    if spread is not None:
        report["seed_spread"] = {k: v for k, v in spread.items() if k != INPUTS}
    report[INPUTS] = {k: v for k, v in manifest[INPUTS].items() if k != CONTENT_KEY}
    if across:  # the universality section read these workspaces too
        report[INPUTS]["across"] = {str(Workspace.of(w).root): Workspace.of(w).fingerprint for w in across}
    return report, charts


def claims(report: dict) -> list[dict]:
    """The issue's checks on the paper's findings, each with the measured numbers."""
    by = {f["attribute"]: f for f in report["features"]}
    out = []
    for attr, label in (("language", "a language latent"), ("class", "a music latent")):
        f = by.get(attr)
        if f is None:
            out.append(
                {
                    "claim": f"{label} with precision and recall >= 90% ({CI_RULE}) in some grid cell",
                    "holds": None,
                    "detail": f"no {attr} feature analysed",
                }
            )
            continue
        g = f["grid"]
        out.append(
            {
                "claim": f"{label} with precision and recall >= 90% ({CI_RULE}) in some grid cell",
                "holds": g["best_cell"] is not None,
                "detail": g["reading"],
            }
        )
    for attr in ("language", "class"):
        f = by.get(attr)
        if f is None or "steering" not in f:
            continue
        s = f["steering"]
        out.append(
            {
                "claim": f"steering flips the sign of mean delta_s for both classes ({attr})",
                "holds": bool(s["flips_both"]),
                "detail": s["reading"],
            }
        )
    f = by.get("language")
    if f is not None and "splitting" in f:
        sp = f["splitting"]
        out.append(
            {
                "claim": "the language feature splits by gender at some latent size",
                "holds": sp["n_subgroup_split"] > 0 and sp["subgroup"] is not None,
                "detail": f"{sp['reading']} ({sp['n_subgroup_split']} of {sp['n_pairs']} smaller/larger "
                f"model pairs split it by {sp['subgroup']})",
            }
        )
    return out


def load_report(ws: Workspace | str) -> dict | None:
    """The stored report data; None when not written, or when the workspace or a model changed."""
    return ResultStore(ws).load_json("", REPORT_JSON.removesuffix(".json"))


# -- HTML ----------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;color:#222;
padding:0 1em} h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em} td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right} th{background:#f4f4f4} .reading{background:#eef6ff;border-left:4px solid #4a90d9;
padding:.4em .8em;margin:.6em 0} .ok{color:#17803d;font-weight:600} .no{color:#b3261e;font-weight:600}
details{margin:.4em 0} .chart{margin:.6em 0;overflow-x:auto} code{background:#f4f4f4;padding:0 3px}
"""


def _svg(chart) -> str | None:
    try:
        import vl_convert as vlc
    except ImportError:
        return None
    try:
        return vlc.vegalite_to_svg(chart.to_json())
    except Exception:  # noqa: BLE001 - a chart that does not render falls back to its table
        return None


def _chart_html(chart_id: str, chart) -> str:
    spec = chart.to_json(indent=None).replace("</", "<\\/")
    svg = _svg(chart)
    body = (
        svg
        if svg
        else "<p><em>(chart not rendered here: see the table; its Vega-Lite spec is embedded)</em></p>"
    )
    return (
        f'<div class="chart" id="{html.escape(chart_id)}">{body}'
        f'<script type="application/vnd.vegalite.v5+json" data-chart="{html.escape(chart_id)}">'
        f"{spec}</script></div>"
    )


def _table(records: list[dict], columns: list[str] | None = None, fmt: dict | None = None) -> str:
    if not records:
        return "<p><em>none</em></p>"
    df = pd.DataFrame(records)
    if columns:
        df = df[[c for c in columns if c in df.columns]]
    for col, f in (fmt or {}).items():
        if col in df:
            df[col] = df[col].map(
                lambda v, f=f: "" if v is None or (isinstance(v, float) and math.isnan(v)) else f(v)
            )
    return df.to_html(index=False, escape=True, border=0, na_rep="")


def _reading(text: str) -> str:
    return f'<p class="reading">{html.escape(text)}</p>'


def _seed_spread_html(spread: dict | None) -> str:
    """The claims' figures over training seeds, or how to measure them."""
    if not spread:
        return (
            "<p><em>These figures come from one training seed. "
            "<code>python -m core seeds --workspace NAME</code> retrains the grid at seeds 0, 1, 2 and "
            "adds their mean and spread here.</em></p>"
        )
    seeds = ", ".join(map(str, spread["seeds"]))
    rows = [
        {"figure": r["figure"], "mean ± sd (min to max)": spread_text(r), **r["values"]}
        for r in spread["figures"]
    ]
    return (
        f"<h3>Spread over training seeds {html.escape(seeds)}</h3>"
        + _reading(
            "Each figure the claims rest on, measured on grids trained with each seed (same data, same "
            "feature datasets): a difference smaller than the spread is noise."
        )
        + _table(rows, fmt={s: (lambda v: f"{v:.3g}") for s in map(str, spread["seeds"])})
    )


def render_html(report: dict, charts: dict) -> str:
    ws = report["workspace"]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>VoxSAE report: {html.escape(str(ws.get('name')))}</title><style>{_CSS}</style></head><body>",
        f"<h1>VoxSAE report: workspace {html.escape(str(ws.get('name')))}</h1>",
        f"<p>{ws.get('segments')} segments, embedder {html.escape(str(ws.get('embedder')))} ({ws.get('dim')}-d), "
        f"{len(report['models'])} SAEs; generated {report['generated_at']}; fingerprint "
        f"<code>{report['fingerprint']}</code>. Paper's cell: {html.escape(str(report['paper_model']))}.</p>",
        "<h2>Claims of the paper on this workspace</h2>",
    ]
    rows = []
    for c in report["claims"]:
        mark = "n/a" if c["holds"] is None else ("yes" if c["holds"] else "no")
        cls = "" if c["holds"] is None else ("ok" if c["holds"] else "no")
        rows.append(
            f"<tr><td style='text-align:left'>{html.escape(c['claim'])}</td><td class='{cls}'>{mark}</td>"
            f"<td style='text-align:left'>{html.escape(c['detail'])}</td></tr>"
        )
    parts.append("<table><tr><th>claim</th><th>holds</th><th>measured</th></tr>" + "".join(rows) + "</table>")
    parts.append(_seed_spread_html(report.get("seed_spread")))
    pct = {"precision": _pct, "recall": _pct, "f1": lambda v: f"{v:.3f}"}
    for n, f in enumerate(report["features"]):
        attr, pos = f["attribute"], f["positive"]
        fig_grid, table_no = (2, "I") if attr == "language" else (3, "II")
        if attr not in ("language", "class"):
            fig_grid, table_no = "", ""
        parts.append(
            f"<h2>{html.escape(attr)}: {html.escape(pos)} vs {html.escape(', '.join(f['negatives']))}</h2>"
        )
        parts.append(f"<h3>Feature dataset (Table {table_no})</h3>" + _reading(f["dataset"]["reading"]))
        parts.append(_table(f["dataset"]["table"]))
        if f["dataset"]["notes"]:
            parts.append("<p><em>" + html.escape("; ".join(f["dataset"]["notes"])) + "</em></p>")
        parts.append("<h3>Feature identification</h3>" + _reading(f["identification"]["reading"]))
        ident_rows = [
            {
                **{
                    k: m[k]
                    for k in ("model", "latent", "precision", "recall", "f1", "best_f1_latent", "best_f1")
                },
                "top 5 (latent:weight)": ", ".join(f"{t['latent']}:{t['weight']:.2f}" for t in m["top"]),
            }
            for m in f["identification"]["models"]
        ]
        parts.append(
            f"<details><summary>all {len(ident_rows)} models</summary>"
            + _table(ident_rows, fmt={**pct, "best_f1": lambda v: f"{v:.3f}"})
            + "</details>"
        )
        parts.append(f"<h3>Precision / recall grid (Fig. {fig_grid})</h3>" + _reading(f["grid"]["reading"]))
        if f"grid-{attr}" in charts:
            parts.append(_chart_html(f"grid-{attr}-{n}", charts[f"grid-{attr}"]))
        fmt1 = {c: (lambda v: f"{v:.1f}") for r in f["grid"]["precision"] for c in r if c != "d_sae"}
        parts.append("<p>precision (%)</p>" + _table(f["grid"]["precision"], fmt=fmt1))
        parts.append("<p>recall (%)</p>" + _table(f["grid"]["recall"], fmt=fmt1))
        parts.append(
            f"<details><summary>95% intervals (bootstrap over test {f['grid']['bootstrap']['unit']}s) and "
            "the test data behind each cell</summary>" + _table(f["grid"]["intervals"]) + "</details>"
        )
        if "splitting" in f:
            sp = f["splitting"]
            parts.append("<h3>Feature splitting (Fig. 4)</h3>" + _reading(sp["reading"]))
            if f"split-{attr}" in charts:
                parts.append(_chart_html(f"split-{attr}-{n}", charts[f"split-{attr}"]))
            kids = [
                {
                    "small": s["small_model"],
                    "large": s["large_model"],
                    "parent": s["parent"],
                    "child": c["latent"],
                    "captures": c["captures"],
                    "share": c["capture_share"],
                    "cover": c["cover"],
                    "decoder cos": c["decoder_cos"],
                }
                for s in sp["first_splits"]
                for c in s["children"]
                if c["latent"] in s["split_children"]
            ]
            if kids:
                parts.append(
                    _table(kids, fmt={"share": _pct, "cover": _pct, "decoder cos": lambda v: f"{v:.2f}"})
                )
        if "steering" in f:
            st = f["steering"]
            tno = "III" if attr == "language" else ("IV" if attr == "class" else "")
            fno = "5" if attr == "language" else ("6" if attr == "class" else "")
            parts.append(f"<h3>Feature steering (Table {tno}, Fig. {fno})</h3>" + _reading(st["reading"]))
            rows = [
                {
                    "class": cls,
                    "n": c["n"],
                    "action": f"{c['direction']} (v = {c['set_to']:+g})",
                    "before": c["mean_before"],
                    "after": c["mean_after"],
                    "flipped": c["flipped_fraction"],
                    "speaker cos change": c.get("speaker_cos_change"),
                }
                for cls, c in st["classes"].items()
            ]
            f3 = lambda v: f"{v:+.3f}"  # noqa: E731
            parts.append(
                _table(rows, fmt={"before": f3, "after": f3, "flipped": _pct, "speaker cos change": f3})
            )
            if f"steer-{attr}" in charts:
                parts.append(_chart_html(f"steer-{attr}-{n}", charts[f"steer-{attr}"]))
    if "universality" in report:
        u = report["universality"]
        parts.append(
            "<h2>Universality: are the features shared across SAEs and embedders?</h2>"
            + _reading(u["reading"])
        )
        if not u["across"]:
            parts.append(
                "<p><em>No other embedder compared: pass <code>report --across W2</code> with a workspace of "
                "the same audio embedded another way (`make demo` builds demo-mfcc).</em></p>"
            )
        if "universality" in charts:
            parts.append(_chart_html("universality", charts["universality"]))
        parts.append(
            _table(
                u["rows"],
                [
                    "feature",
                    "latent",
                    "comparison",
                    "other_workspace",
                    "other_model",
                    "match_latent",
                    "match_correlation",
                    "universal",
                ],  # fmt: skip
                fmt={"match_correlation": lambda v: f"{v:.2f}"},
            )
        )
    if "suggestions" in report:
        s = report["suggestions"]
        parts.append("<h2>Label suggestions</h2>" + _reading(s["reading"]))
        parts.append(
            _table(
                s["top"], ["latent", "attribute", "value", "precision", "recall", "f1", "n_active"], fmt=pct
            )
        )
    if "continuous" in report:
        parts.append(_continuous_html(report["continuous"], charts))
    if report["skipped"]:
        parts.append(
            "<h2>Not analysed</h2><ul>"
            + "".join(f"<li>{html.escape(s)}</li>" for s in report["skipped"])
            + "</ul>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _continuous_html(sec: dict, charts: dict) -> str:
    """Paper V-D's question: per attribute the verdict, the figure and the top latents."""
    f3 = lambda v: f"{v:+.3f}"  # noqa: E731
    parts = [f"<h2>{html.escape(sec['question'])}</h2>" + _reading(sec["answer"])]
    for n, a in enumerate(sec["attributes"]):
        parts.append(f"<h3>{html.escape(a['attribute'])}</h3>" + _reading(a["reading"]))
        if f"continuous-{a['attribute']}" in charts:
            parts.append(_chart_html(f"continuous-{n}", charts[f"continuous-{a['attribute']}"]))
        fmt = {"spearman": f3, "spearman_active": f3, "mass_in_range": _pct, "mi": lambda v: f"{v:.3f}"}
        parts.append(_table(a["top"], fmt={**fmt, "range_lo": "{:.4g}".format, "range_hi": "{:.4g}".format}))
    if sec["skipped"]:
        parts.append("<p><em>" + html.escape("; ".join(sec["skipped"])) + "</em></p>")
    return "\n".join(parts)


def write_report(ws: Workspace, *, progress: bool = True, across: tuple = ()) -> tuple[dict, str]:
    report, charts = build_report(ws, progress=progress, across=across)
    page = render_html(report, charts)
    inputs = report.pop(INPUTS)
    atomic.write_text(ws.analyses_dir / REPORT_HTML, page)
    report = ResultStore(ws).save_json("", REPORT_JSON.removesuffix(".json"), report, inputs)
    return report, page


def add_arguments(parser) -> None:
    parser.add_argument("--workspace", required=True, help="workspace name or path")
    parser.add_argument(
        "--across",
        action="append",
        default=[],
        metavar="W2",
        help="a workspace of the same audio embedded by another embedder (repeatable): the report says "
        "which features its SAEs share with this workspace's",
    )


def main(args) -> int:
    from core.analysis.models import warn_unusable_models

    ws = Workspace.open(args.workspace)
    from core.analysis.universality import check_across

    warn_unusable_models(ws)
    across = check_across(ws, args.across)  # each named workspace usable, before any work
    report, _ = write_report(ws, across=across)
    for f in report["features"]:
        print(f"{f['attribute']}: {f['identification']['reading']}")
        print(f"  grid: {f['grid']['reading']}")
        if "splitting" in f:
            print(f"  splitting: {f['splitting']['reading']}")
        if "steering" in f:
            print(f"  steering: {f['steering']['reading']}")
    if "continuous" in report:
        print(f"{report['continuous']['question']} {report['continuous']['answer']}")
        for a in report["continuous"]["attributes"]:
            print(f"  {a['attribute']}: {a['reading']}")
    for c in report["claims"]:
        print(f"[{'n/a' if c['holds'] is None else ('yes' if c['holds'] else 'NO ')}] {c['claim']}")
    if "universality" in report:
        print(f"universality: {report['universality']['reading']}")
    spread = report.get("seed_spread")
    if spread:
        print(f"over training seeds {', '.join(map(str, spread['seeds']))}:")
        for r in spread["figures"]:
            print(f"  {r['figure']}: {spread_text(r)}")
    print(f"wrote {ws.analyses_dir / REPORT_HTML} and {ws.analyses_dir / REPORT_JSON}")
    return 0
