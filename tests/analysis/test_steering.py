import json

import numpy as np
import pytest
from _analysis_synth import trained_workspace

from core.analysis.datasets import FeatureDataset
from core.analysis.models import find_model, open_sae
from core.analysis.steering import SteeringSession, load_steering, run_steering, steer_naive
from core.cli import main as cli_main
from core.errors import InputError, NotFoundError


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return trained_workspace(tmp_path_factory, "steer")


def test_steering_flips_mean_delta_s_for_both_classes(ws):
    for attr, pos, neg in (("language", "es", "en"), ("class", "music", "voice")):
        out = run_steering(ws, attr, pos, [neg], model="topk-L6-K2")
        c = out["classes"]
        assert c[pos]["mean_before"] > 0 > c[pos]["mean_after"], (attr, c)
        assert c[neg]["mean_before"] < 0 < c[neg]["mean_after"], (attr, c)
        assert c[pos]["direction"] == "deactivate" and c[pos]["set_to"] == -1.0
        assert c[neg]["direction"] == "activate" and c[neg]["set_to"] == 1.0
        assert 0 < c[pos]["flipped_fraction"] <= 1 and 0 < c[neg]["flipped_fraction"] <= 1
        assert len(out["distributions"][pos]["before"]) == c[pos]["n"]
        stored = load_steering(ws, attr, pos, "topk-L6-K2")
        assert stored["classes"] == json.loads(json.dumps(c))


def test_speaker_similarity_is_reported(ws):
    c = run_steering(ws, "language", "es", ["en"], model="topk-L6-K2")["classes"]
    for cls in ("es", "en"):
        assert -1.0 <= c[cls]["speaker_cos_before"] <= 1.0
        assert c[cls]["speaker_cos_change"] == pytest.approx(
            c[cls]["speaker_cos_after"] - c[cls]["speaker_cos_before"], abs=1e-9
        )


def test_vectorised_equals_naive_reference(ws):
    ds = FeatureDataset.load_or_build(ws, "language", "es", ["en"])
    ref = find_model(ws, "topk-L16-K2")
    session = SteeringSession.build(ws, ref, ds)
    for latent, value in ((3, 1.0), (7, 0.4)):
        res = session.steer(latent, value)
        before, after = steer_naive(
            open_sae(ref), session.z, session.y, latent, value, session.c_pos, session.c_neg
        )
        np.testing.assert_allclose(res.delta_before, before, atol=1e-5)
        np.testing.assert_allclose(res.delta_after, after, atol=1e-5)


def test_cli_json_shape(ws, capsys):
    rc = cli_main(
        [
            "steer",
            "--workspace",
            str(ws.root),
            "--model",
            "topk-L6-K2",
            "--attribute",
            "language",
            "--positive",
            "es",
            "--json",
        ]
    )
    assert rc == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"model", "latent", "value", "classes"}
    assert obj["value"] == 1.0 and obj["model"] == "topk-L6-K2"
    assert set(obj["classes"]) == {"es", "en"}
    for c in obj["classes"].values():
        assert set(c) == {"n", "mean_before", "mean_after", "flipped_fraction"}


def test_bad_latent_model_and_value(ws, capsys):
    with pytest.raises(NotFoundError, match=r"latent 99 is out of range \(0\.\.5\)"):
        run_steering(ws, "language", "es", model="topk-L6-K2", latent=99)
    with pytest.raises(NotFoundError, match=r"no model 'topk-L7'"):
        run_steering(ws, "language", "es", model="topk-L7")
    with pytest.raises(InputError, match=r"positive number"):
        run_steering(ws, "language", "es", model="topk-L6-K2", latent=0, value=-1)
    rc = cli_main(
        [
            "steer",
            "--workspace",
            str(ws.root),
            "--model",
            "topk-L6-K2",
            "--attribute",
            "language",
            "--positive",
            "es",
            "--latent",
            "-1",
        ]
    )
    assert rc == 2 and "out of range" in capsys.readouterr().err


def test_close_values_never_share_a_stored_result(ws):
    from core.analysis.steering import load_steering

    one = run_steering(ws, "language", "es", model="topk-L6-K2", latent=0, value=1.0)
    near = run_steering(ws, "language", "es", model="topk-L6-K2", latent=0, value=1.00000001)
    assert (
        load_steering(ws, "language", "es", "topk-L6-K2", latent=0, value=1.0)["value"] == one["value"] == 1.0
    )
    got = load_steering(ws, "language", "es", "topk-L6-K2", latent=0, value=1.00000001)
    assert got["value"] == near["value"] == 1.00000001
