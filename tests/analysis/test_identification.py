import json

import numpy as np
import pytest
from _analysis_synth import build_workspace, trained_workspace

from core.analysis.identification import (
    detector_scores,
    identification_frame,
    identify,
    load_identification,
    reading,
)
from core.cli import main as cli_main
from core.errors import InputError


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return trained_workspace(tmp_path_factory, "ident")


def test_identifies_the_planted_language_and_music_latents(ws):
    res = identify(ws, "language", "es", ["en"])
    by = {m["model"]: m for m in res["models"]}
    assert set(by) == {"topk-L6-K2", "topk-L16-K2"}
    small = by["topk-L6-K2"]
    # the small SAE has one Spanish latent: a high-precision, high-recall detector
    assert small["precision"] >= 0.8 and small["recall"] >= 0.9, small
    assert len(small["top"]) == 5 and small["top"][0]["latent"] == small["latent"]
    assert small["top"][0]["weight"] >= small["top"][1]["weight"]
    assert res["probe_accuracy"] >= 0.95
    music = identify(ws, "class", "music", ["voice"])
    for m in music["models"]:
        assert m["precision"] >= 0.9 and m["recall"] >= 0.9, m
    assert "detects es: precision" in reading(small, "es")
    df = identification_frame(res)
    assert {"model", "arch", "d_sae", "k", "latent", "precision", "recall", "f1", "probe_accuracy"} <= set(df)


def test_metrics_match_sklearn(ws):
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(0)
    a = rng.random((50, 7)) > 0.5
    y = rng.random(50) > 0.4
    p, r, f = detector_scores(a, y)
    for j in range(7):
        ref = precision_recall_fscore_support(y, a[:, j], average="binary", zero_division=0)
        np.testing.assert_allclose([p[j], r[j], f[j]], ref[:3])


def test_stored_reused_and_loaded(ws):
    res = identify(ws, "language", "es", ["en"])
    loaded = load_identification(ws, "language", "es", ["en"])
    assert loaded["models"] == res["models"]
    assert load_identification(ws, "class", "voice") is None


def test_cli_json_one_object_per_model(ws, capsys):
    assert (
        cli_main(
            ["identify", "--workspace", str(ws.root), "--attribute", "language", "--positive", "es", "--json"]
        )
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2
    for obj in lines:
        for key in ("model", "arch", "d_sae", "k", "latent", "precision", "recall", "f1", "probe_accuracy"):
            assert key in obj
        assert 0 <= obj["latent"] < obj["d_sae"]


def test_models_of_another_workspace(ws, tmp_path, capsys):
    other = build_workspace(str(tmp_path / "other"), seed=5)
    res = identify(other, "language", "es", model_workspace=ws)
    assert {m["model_workspace"] for m in res["models"]} == {"synth"}
    assert max(m["f1"] for m in res["models"]) > 0.8
    # another embedder: one clear error
    foreign = build_workspace(str(tmp_path / "foreign"), embedder="titanet")
    with pytest.raises(InputError, match=r"embedder and dim must match"):
        identify(foreign, "language", "es", model_workspace=ws)
    rc = cli_main(
        [
            "identify",
            "--workspace",
            str(foreign.root),
            "--attribute",
            "language",
            "--positive",
            "es",
            "--model-workspace",
            str(ws.root),
        ]
    )
    assert rc == 2
    assert "embedder titanet" in capsys.readouterr().err


def test_bad_attribute_value_via_cli(ws, capsys):
    rc = cli_main(["identify", "--workspace", str(ws.root), "--attribute", "language", "--positive", "fr"])
    assert rc == 2
    assert "no value 'fr'" in capsys.readouterr().err
