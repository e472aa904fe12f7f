import json

import pytest
from _analysis_synth import trained_workspace

from core.analysis.analyze import load_manifest, run_analyses
from core.analysis.report import load_report
from core.cli import main as cli_main
from core.constants import REPORT_HTML, REPORT_JSON


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return trained_workspace(tmp_path_factory, "report")


def test_analyze_is_cached_and_report_is_written(ws, capsys):
    assert cli_main(["analyze", "--workspace", str(ws.root)]) == 0
    manifest = load_manifest(ws)
    assert [f["attribute"] for f in manifest["features"]] == ["language", "class"]
    assert all(f["status"] == "done" for f in manifest["features"])
    assert len(manifest["features"][0]["steering"]) == 2  # every model's identified latent
    stamp = (ws.analyses_dir / "manifest.json").stat().st_mtime_ns
    capsys.readouterr()
    assert cli_main(["analyze", "--workspace", str(ws.root)]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (ws.analyses_dir / "manifest.json").stat().st_mtime_ns == stamp
    assert run_analyses(ws, progress=False)["up_to_date"]

    assert cli_main(["report", "--workspace", str(ws.root)]) == 0
    out = capsys.readouterr().out
    assert "detects es: precision" in out
    page = (ws.analyses_dir / REPORT_HTML).read_text()
    assert "detects es: precision" in page and "detects music: precision" in page
    assert "application/vnd.vegalite.v5+json" in page  # the chart specs travel with the page
    assert "<table" in page  # and a plain table for every figure
    assert "<script src" not in page and "<link" not in page  # self-contained: nothing to fetch
    try:
        import vl_convert  # noqa: F401

        assert page.count("<svg") >= 4  # charts rendered inline
    except ImportError:
        pass
    report = json.loads((ws.analyses_dir / REPORT_JSON).read_text())
    assert report == load_report(ws)
    claims = {c["claim"]: c for c in report["claims"]}
    music = claims[
        "a music latent with precision and recall >= 90% (lower bounds of the 95% CIs) in some grid cell"
    ]
    assert music["holds"] and "test speakers" in music["detail"]
    assert claims["steering flips the sign of mean delta_s for both classes (language)"]["holds"]
    assert claims["the language feature splits by gender at some latent size"]["holds"]
    lang = report["features"][0]
    assert lang["dataset"]["table"] and lang["grid"]["recall"]
    # the grid section gives every cell's interval and the test data behind it
    cells = {c["model"]: c for c in lang["grid"]["intervals"]}
    for m in lang["identification"]["models"]:
        p = cells[m["model"]]["precision [95% CI]"]
        assert p.startswith(f"{100 * m['precision']:.1f} [{100 * m['precision_lo']:.1f}, ")
        assert cells[m["model"]]["test speakers"] == m["n_test_speakers"] > 0
    assert lang["grid"]["cells_at_bar"] == sum(
        m["precision_lo"] >= 0.9 and m["recall_lo"] >= 0.9 for m in lang["identification"]["models"]
    )
    assert "95% intervals (bootstrap over test speakers)" in page
    assert "latent" in lang["identification"]["reading"]


def test_analyze_without_models_is_a_clear_error(tmp_path, capsys):
    from _analysis_synth import build_workspace

    empty = build_workspace(str(tmp_path / "empty"))
    assert cli_main(["analyze", "--workspace", str(empty.root)]) == 2
    assert "no trained models" in capsys.readouterr().err


def test_analyze_reruns_when_a_model_changes(tmp_path, capsys):
    from _analysis_synth import build_workspace, train_models

    ws = build_workspace(str(tmp_path / "w"))
    train_models(ws, shapes=((6, 2),), steps=60)
    first = run_analyses(ws, progress=False)
    assert not first["up_to_date"]
    assert run_analyses(ws, progress=False)["up_to_date"]
    train_models(ws, shapes=((6, 2),), steps=80)  # retrained: new weights, same name
    again = run_analyses(ws, progress=False)
    assert not again["up_to_date"] and again["key"] != first["key"]


def test_model_workspace_results_sit_beside_the_own_ones(tmp_path):
    """`analyze --model-workspace B` on A keeps A's own results and writes B's with an @B suffix."""
    from _analysis_synth import build_workspace, train_models

    from core.analysis.grid import load_grid
    from core.analysis.splitting import load_splitting
    from core.analysis.steering import load_steering
    from core.analysis.suggestions import load_suggestions

    a = build_workspace(str(tmp_path / "a"), seed=1)
    b = build_workspace(str(tmp_path / "b"), seed=2)
    train_models(a, shapes=((6, 2),), steps=150)
    train_models(b, shapes=((6, 2), (16, 2)), steps=150)
    run_analyses(a, progress=False)
    own = {p.relative_to(a.analyses_dir): p.read_bytes() for p in a.analyses_dir.rglob("*") if p.is_file()}
    assert cli_main(["analyze", "--workspace", str(a.root), "--model-workspace", str(b.root)]) == 0
    for rel, data in own.items():  # nothing of A's own analyses was touched
        assert (a.analyses_dir / rel).read_bytes() == data, rel
    assert list(load_grid(a, "language", "es")["model"]) == ["topk-L6-K2"]
    assert list(load_grid(a, "language", "es", model_workspace=b)["model"]) == ["topk-L6-K2", "topk-L16-K2"]
    assert {t["model"] for t in load_splitting(a, "language", "es", model_workspace=b)["tracks"]} == {
        "topk-L6-K2",
        "topk-L16-K2",
    }
    assert load_steering(a, "language", "es", "topk-L16-K2") is None
    assert load_steering(a, "language", "es", "topk-L16-K2", model_workspace=b) is not None
    assert load_suggestions(a, "topk-L16-K2", model_workspace=b) is not None
    assert load_manifest(a, b)["model_workspace"] == "b" and load_manifest(a)["model_workspace"] == "a"
    assert run_analyses(a, model_workspace=b, progress=False)["up_to_date"]
    assert run_analyses(a, progress=False)["up_to_date"]  # A's own cache still valid
