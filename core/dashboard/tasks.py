"""Which labelled tasks the dashboard shows: an attribute, its positive value and the negative
values it is contrasted with (language: es vs en, class: music vs voice, ...).

A task is shown when `analyze` saved a feature dataset for it (analyses/features/*.json); with
none saved, the defaults of core.constants.DEFAULT_FEATURES whose values the workspace holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from core.constants import DEFAULT_FEATURES, FEATURES_SUBDIR


@dataclass(frozen=True)
class Task:
    """A labelled feature dataset: attribute, positive value, negative values."""

    attribute: str
    positive: str
    negatives: tuple[str, ...]

    @property
    def title(self) -> str:
        return f"{self.attribute}: {self.positive} vs {' + '.join(self.negatives)}"


DEFAULT_TASKS = tuple(Task(attribute, pos, (neg,)) for attribute, pos, neg in DEFAULT_FEATURES)
"""core.constants.DEFAULT_FEATURES (what `analyze` runs by default) as tasks, in the paper's order."""


def defined_tasks(ws) -> list[Task]:
    """Tasks with a saved feature dataset (what `analyze` ran), else the defaults the workspace has."""
    out: list[Task] = []
    folder = ws.analyses_dir / FEATURES_SUBDIR
    if folder.is_dir():
        for p in sorted(folder.glob("*.json")):
            try:
                raw = json.loads(p.read_text())
                t = Task(str(raw["attribute"]), str(raw["positive"]), tuple(str(v) for v in raw["negatives"]))
            except (ValueError, KeyError, TypeError):
                continue
            if t not in out:
                out.append(t)
    order = {t: i for i, t in enumerate(DEFAULT_TASKS)}
    out.sort(key=lambda t: (order.get(t, len(order)), t.title))  # the paper's tasks first
    if not out:
        cols = ws.segments.columns
        for t in DEFAULT_TASKS:
            if t.attribute in cols:
                values = {str(v) for v in ws.segments[t.attribute].dropna().unique()}
                if t.positive in values and set(t.negatives) <= values:
                    out.append(t)
    return out
