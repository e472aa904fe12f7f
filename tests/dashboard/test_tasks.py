"""core.dashboard.tasks: the labelled tasks the dashboard shows."""

from __future__ import annotations

import json

import numpy as np

from core.constants import DEFAULT_FEATURES, FEATURES_SUBDIR
from core.dashboard.tasks import DEFAULT_TASKS, Task, defined_tasks


def test_default_tasks_are_the_default_features():
    assert [(t.attribute, t.positive, t.negatives) for t in DEFAULT_TASKS] == [
        (attr, pos, (neg,)) for attr, pos, neg in DEFAULT_FEATURES
    ]
    assert DEFAULT_TASKS[0].title == "language: es vs en"


def test_defaults_the_workspace_has(tmp_path, make_workspace):
    x = np.ones((6, 4))
    ws = make_workspace(tmp_path / "a", x, language=["es", "en"] * 3, **{"class": ["voice"] * 6})
    assert defined_tasks(ws) == [Task("language", "es", ("en",))]  # no music: no class task
    assert defined_tasks(make_workspace(tmp_path / "b", x, gender=["f", "m"] * 3)) == []


def test_saved_feature_datasets_first_the_papers(tmp_path, make_workspace):
    ws = make_workspace(tmp_path / "c", np.ones((6, 4)), language=["es", "en"] * 3)
    folder = ws.analyses_dir / FEATURES_SUBDIR
    folder.mkdir(parents=True)
    for name, raw in {
        "a.json": {"attribute": "gender", "positive": "f", "negatives": ["m"]},
        "b.json": {"attribute": "class", "positive": "music", "negatives": ["voice"]},
        "c.json": {"attribute": "language", "positive": "es", "negatives": ["en"]},
        "d.json": {"attribute": "language", "positive": "es", "negatives": ["en"]},
        "e.json": {"not": "a feature dataset"},
    }.items():
        (folder / name).write_text(json.dumps(raw))
    assert [t.title for t in defined_tasks(ws)] == [
        "language: es vs en",
        "class: music vs voice",
        "gender: f vs m",
    ]
