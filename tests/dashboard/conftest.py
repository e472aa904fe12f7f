"""A small workspace for the core.dashboard tests: one second per segment, any metadata."""

from __future__ import annotations

import pytest
from dashboard_ws import small_workspace


@pytest.fixture(scope="session")
def make_workspace():
    return small_workspace
