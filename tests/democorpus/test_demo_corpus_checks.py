"""core.democorpus.build's checks that come before any synthesis: refused settings, and a
workspace found up to date from its workspace.json (nothing here builds a corpus)."""

from __future__ import annotations

import numpy as np
import pytest

from core.democorpus import build as demo_corpus
from core.democorpus import calls as ca
from core.errors import InputError
from core.workspace.workspace import Workspace


@pytest.fixture
def no_synthesis(monkeypatch):
    monkeypatch.setattr(ca, "plan_corpus", lambda *a: pytest.fail("a corpus was planned"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"seed": -1}, r"demo-corpus: --seed must be 0 or more, got -1"),
        ({"jobs": 100_000}, r"demo-corpus: --jobs 100000 is more worker processes"),
        (
            {"scale": 1e9},
            r"--scale 1e\+09 would write about 270,000,000\.0 GB of audio to .*/d; .* GB free there",
        ),
    ],
    ids=["negative-seed", "jobs", "scale"],
)
def test_settings_are_refused_before_any_work(tmp_path, no_synthesis, kwargs, match):
    with pytest.raises(InputError, match=match):
        demo_corpus.build(str(tmp_path / "d"), progress=False, **kwargs)
    assert not (tmp_path / "d").exists()


def test_an_up_to_date_workspace_is_found_from_its_workspace_json(tmp_path, no_synthesis, segments_factory):
    fp = demo_corpus.settings_fingerprint(demo_corpus.settings(0, 1.0))
    ws = Workspace.create(
        tmp_path / "d",
        segments_factory(3),
        np.ones((3, 2), np.float32),
        embedder="resemblyzer",
        sample_rate=16_000,
        provenance={"settings_fingerprint": fp},
    )
    found, built = demo_corpus.build(str(ws.root), progress=False)
    assert not built and found.fingerprint == ws.fingerprint
