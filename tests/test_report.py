import json

import pytest
from _analysis_synth import trained_workspace

from core.analyses import load_manifest, run_analyses
from core.cli import main as cli_main
from core.constants import REPORT_HTML, REPORT_JSON
from core.report import load_report


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
    assert claims["a music latent with precision and recall >= 90% in some grid cell"]["holds"]
    assert claims["steering flips the sign of mean delta_s for both classes (language)"]["holds"]
    assert claims["the language feature splits by gender at some latent size"]["holds"]
    lang = report["features"][0]
    assert lang["dataset"]["table"] and lang["grid"]["recall"]
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
