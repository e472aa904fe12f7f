"""`ingest --ray ADDRESS` where no Ray cluster answers, or ADDRESS is not an address: refused at
once (before any decoding, and before ray.init, which would retry for minutes), one `error:`
line naming the address, nothing written."""

from __future__ import annotations

import time

import pytest
from bad_audio import write_voice
from hostile_harness import assert_refused, run_cli, snapshot


@pytest.mark.parametrize(
    ("address", "needles"),
    [
        ("127.0.0.1:1", ["--ray 127.0.0.1:1", "cannot connect to a Ray cluster", "Connection refused"]),
        ("ray://127.0.0.1:1", ["--ray ray://127.0.0.1:1", "cannot connect to a Ray cluster"]),
        ("headnode", ["--ray headnode", "expected HOST:PORT"]),
        ("10.0.0.1:99999", ["--ray 10.0.0.1:99999", "expected HOST:PORT"]),
    ],
)
def test_ingest_on_an_unreachable_or_malformed_ray_address_is_refused_fast(
    data_root, tmp_path, address, needles
):
    calls = tmp_path / "calls"
    write_voice(calls / "a.wav", seed=1)
    before = snapshot(data_root, calls)
    started = time.perf_counter()
    out = run_cli("ingest", calls, "--workspace", "w", "--ray", address)
    took = time.perf_counter() - started
    assert_refused(out, *needles, before=before, roots=[data_root, calls], allow_new=False)
    assert took < 10.0, f"refused after {took:.1f} s"
    assert not (data_root / "w").exists()  # not even the workspace folder
