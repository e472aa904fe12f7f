import subprocess
import sys
from pathlib import Path

from core.cli import COMMANDS, main

REPO = Path(__file__).resolve().parent.parent


def test_top_level_help_lists_every_command():
    out = subprocess.run(
        [sys.executable, "-m", "core", "--help"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    for name in COMMANDS:
        assert name in out


def test_user_error_is_one_line_exit_2(capsys):
    rc = main(["summary", "--workspace", "does-not-exist"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and "does-not-exist" in err[0]
