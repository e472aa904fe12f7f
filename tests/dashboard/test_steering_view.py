"""core.dashboard.steering_view: the signed slider, the chosen samples and the chart frames and
tables, on a SteeringSession (core.analysis.steering) built from small arrays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.analysis.steering import SteeringSession
from core.dashboard import steering_view as sv

N, D_SAE, D_IN = 40, 6, 5


@pytest.fixture(scope="module")
def session():
    rng = np.random.default_rng(0)
    z = np.maximum(rng.standard_normal((N, D_SAE)), 0).astype(np.float32)
    y = np.arange(N) % 4 == 0
    s = SteeringSession(
        "m",
        D_SAE,
        z,
        y,
        z,
        y,
        rng.standard_normal((D_SAE, D_IN)),
        rng.standard_normal(D_IN),
        ("es", "en"),
        np.array([f"spk{i % 8}" for i in range(N)]),
    )
    s.test_rows = np.arange(100, 100 + N)
    return s


def test_signed_value(session):
    plus = sv.steer_signed(session, 2, 1.5)
    ref = session.steer(2, 1.5)
    assert np.allclose(plus.delta_after, ref.delta_after) and plus.value == 1.5
    minus = sv.steer_signed(session, 2, -1.5)  # positives set to +1.5, negatives to -1.5
    assert np.array_equal(minus.y, session.y) and minus.value == -1.5
    assert np.allclose(minus.target, np.where(session.y, 1.5, -1.5))
    assert not np.allclose(minus.delta_after, plus.delta_after)
    zero = sv.steer_signed(session, 2, 0.0)
    assert np.array_equal(zero.delta_after, zero.delta_before) and zero.value == 0.0
    assert np.allclose(zero.target, session.z[:, 2])
    mask = sv.sample_mask(session, "only es")
    only = sv.steer_signed(session, 2, 1.5, mask)
    assert only.y.all() and len(only.y) == int(session.y.sum())
    assert np.allclose(only.delta_after, plus.delta_after[session.y])


def test_sample_modes_and_masks(session):
    modes = sv.sample_modes(session)
    assert modes == ["both classes", "only es", "only en", "chosen segments"]
    assert sv.sample_mask(session, modes[0]) is None
    assert np.array_equal(sv.sample_mask(session, modes[1]), session.y)
    assert np.array_equal(sv.sample_mask(session, modes[2]), ~session.y)

    class Ws:
        segments = pd.DataFrame({"segment_id": [f"seg{i}" for i in range(200)]})

    ids = sv.test_segment_ids(Ws(), session)
    assert list(ids[:2]) == ["seg100", "seg101"]
    chosen = sv.sample_mask(session, modes[3], ids, ["seg101", "seg139"])
    assert list(np.flatnonzero(chosen)) == [1, 39]
    assert not sv.sample_mask(session, modes[3], ids, []).any()


def test_frames_and_means_table(session):
    res = sv.steer_signed(session, 2, 2.5)
    dist, means = sv.steering_frames(res)
    assert len(dist) == 2 * N and set(dist["when"]) == {"before", "after"}
    assert list(means["class"]) == ["es", "en"] and list(means["n"]) == [10, 30]
    small, _ = sv.steering_frames(res, max_points=8)
    assert len(small) == 16  # a seeded subsample for the chart; means use every sample
    table = sv.means_table(means)
    assert list(table.columns) == ["es", "en"]
    assert list(table.loc["v_phi set to"]) == ["-2.5000", "+2.5000"]
    assert list(table.loc["n"]) == ["10", "30"]
    assert table.loc["flipped", "es"].endswith(" %")
    changes = sv.speaker_changes(means)
    assert [label for label, _ in changes] == [
        "es: own-speaker similarity change",
        "en: own-speaker similarity change",
    ]
    assert all(v == "n/a" or v[0] in "+-" for _, v in changes)
    assert sv.signed(None) == sv.signed(float("nan")) == sv.signed(np.float32("nan")) == "n/a"
    assert sv.signed(0.5) == "+0.5000"


def test_slider_value_keeps_what_the_slider_offers_and_says_when_it_falls_back():
    assert sv.slider_value(-3.0) == (-3.0, None)
    assert sv.slider_value("2.5") == (2.5, None)
    for bad in (float("nan"), float("inf"), 99.0, -1e308, "abc", None):
        value, warning = sv.slider_value(bad)
        assert value == sv.DEFAULT_VALUE == 1.0
        assert warning == f"a = {bad} is not a value the slider offers (-3 to 3); showing a = 1"
