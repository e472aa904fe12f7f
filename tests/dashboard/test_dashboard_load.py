"""bench/dashboard_load.py, small: concurrent Streamlit websocket sessions against a real
`streamlit run app.py` on 127.0.0.1, each opening a latent page (and its audio) and moving the
steering slider; no session sees an error and the server's memory stays bounded."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import dashboard_load  # noqa: E402


@pytest.mark.slow
def test_four_sessions_at_once_see_no_error_and_server_memory_stays_bounded(tmp_path):
    base, load, rss_after = dashboard_load.run_load(sessions=4, moves=2, timeout_s=300, workdir=tmp_path)
    assert base.errors == [] and load.errors == [], base.errors + load.errors
    # a session's requests: the latent page, the steering page, one fragment rerun per slider move
    assert (base.sessions, len(base.times_ms)) == (1, 4)
    assert (load.sessions, len(load.times_ms)) == (4, 16)
    assert all(t > 0 for t in base.times_ms + load.times_ms)
    # bounded: the four sessions together cost the server far less than the dashboard's 2 GB
    # target, and little beside what one session alone needed
    assert 100 < base.rss_peak_mb <= load.rss_peak_mb < 2048
    assert load.rss_peak_mb - base.rss_peak_mb < 4 * 100 and rss_after < 2048
    line = dashboard_load.key_values(load.figures())
    assert line.startswith("sessions=4 errors=0 rss_peak_mb=") and " p50_ms=" in line and " p95_ms=" in line


def test_a_session_counts_exception_boxes_and_error_messages_as_errors():
    from streamlit.proto.Alert_pb2 import Alert
    from streamlit.proto.Element_pb2 import Element

    boom, error, warning = Element(), Element(), Element()
    boom.exception.type, boom.exception.message = "ValueError", "x"
    error.alert.format, error.alert.body = Alert.Format.ERROR, "cannot write labels.sqlite"
    warning.alert.format, warning.alert.body = Alert.Format.WARNING, "a hand-edited link"
    session = dashboard_load.Session(server=None, name="s1")
    run = dashboard_load.Run(1.0, [(el.WhichOneof("type"), el, "") for el in (boom, error, warning)])
    session._check(run, "latents")
    assert session.result.errors == [
        "s1: latents: exception box: ValueError: x",
        "s1: latents: error message: cannot write labels.sqlite",
    ]


def test_the_means_table_is_read_from_the_arrow_bytes_the_server_sends():
    import io

    import pandas as pd
    import pyarrow as pa
    from streamlit.proto.Element_pb2 import Element

    frame = pd.DataFrame({"es": ["-1.5000", "12"], "en": ["+1.5000", "30"]}, index=["v_phi set to", "n"])
    sink = io.BytesIO()
    table = pa.Table.from_pandas(frame)
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    el = Element()
    el.table.arrow_data.data = sink.getvalue()
    run = dashboard_load.Run(1.0, [("table", el, "")])
    assert dashboard_load.Session._v_phi(run) == ["-1.5000", "+1.5000"]
    assert dashboard_load.Session._v_phi(dashboard_load.Run(1.0)) is None


def test_the_load_is_bounded():
    with pytest.raises(ValueError, match="sessions 1..50"):
        dashboard_load.run_load(sessions=51)
    with pytest.raises(ValueError, match="moves 1..20"):
        dashboard_load.run_load(sessions=2, moves=0)
