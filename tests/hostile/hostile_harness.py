"""The hostile-input harness: run a command as a user would and check that a refusal is clean.

Every hostile case asserts the same four things (issue: "Trust"):

* a non-zero exit code (or a refused request),
* exactly one `error: ...` line, naming the input and what is wrong,
* no traceback,
* every file that existed before is byte-identical after (`snapshot` before, `assert_refused`
  compares after).

    before = snapshot(data_root)
    out = run_cli("train", "--workspace", "w", "--lr", "nan")
    assert_refused(out, "--lr", "nan", before=before, roots=[data_root])

`run_cli` runs `core.cli.main` in this process (fast: no torch import per case); an exception
that escapes it is caught and reported as the traceback the user would have seen.
`run_cli_process` runs `python -m core` in a child process, for kill -9 and for cases that need
a fresh interpreter (umask, resource limits). `request` calls what a dashboard page calls and
turns its outcome into the same Outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Outcome:
    rc: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]

    def __str__(self) -> str:  # what a failing assertion shows
        return f"rc={self.rc}\n--- stdout ---\n{self.out[-2000:]}\n--- stderr ---\n{self.err[-4000:]}"


def run_cli(*argv: str | os.PathLike) -> Outcome:
    """`python -m core ARGV`, in this process; stdout and stderr captured."""
    from core.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse refusals
            rc = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - exactly what a user would see as a traceback
            traceback.print_exc(file=err)
            rc = 1
    return Outcome(int(rc or 0), out.getvalue(), err.getvalue())


def run_cli_process(*argv: str | os.PathLike, env: dict | None = None, timeout: float = 300) -> Outcome:
    """`python -m core ARGV` in a child process (same VOXSAE_DATA as this one unless `env` says)."""
    proc = subprocess.run(
        [sys.executable, "-m", "core", *map(str, argv)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr)


def request(fn, *args, answer=None, **kwargs) -> Outcome:
    """Call what a dashboard page calls, as an Outcome: rc 2 and one `error:` line for a
    VoxSAEError (what the page shows in st.error); rc 1 and the traceback for anything else;
    else `answer(result)` (by default rc 0 and the result's repr)."""
    from core.errors import VoxSAEError

    try:
        result = fn(*args, **kwargs)
    except VoxSAEError as exc:
        return Outcome(2, "", f"error: {exc}\n")
    except Exception:  # noqa: BLE001 - exactly what the page would show as an exception box
        return Outcome(1, "", traceback.format_exc())
    return answer(result) if answer else Outcome(0, repr(result)[:2000], "")


def snapshot(*roots: str | os.PathLike) -> dict[str, str]:
    """{path: sha256 of its bytes} of every file under `roots` (a missing root counts as empty)."""
    out: dict[str, str] = {}
    for root in map(Path, roots):
        if root.is_file():
            out[str(root)] = hashlib.sha256(root.read_bytes()).hexdigest()
            continue
        for path in sorted(root.rglob("*")) if root.is_dir() else []:
            if path.is_file() and not path.is_symlink():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_same_files(before: dict[str, str], roots, *, allow_new: bool = True) -> None:
    """Every file of `before` is still there, byte-identical; new files only if `allow_new`."""
    after = snapshot(*roots)
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"files changed or removed: {changed[:10]}"
    if not allow_new:
        new = sorted(set(after) - set(before))
        assert not new, f"files left behind: {new[:10]}"


def assert_refused(
    outcome: Outcome,
    *needles: str,
    before: dict[str, str] | None = None,
    roots=(),
    allow_new: bool = True,
) -> str:
    """A clean refusal: rc != 0, one `error:` line holding every needle, no traceback, and (given
    `before`) every file under `roots` as it was. Returns the error line."""
    assert outcome.rc != 0, f"exit code 0 for a hostile input\n{outcome}"
    assert "Traceback" not in outcome.err, f"a traceback reached the user\n{outcome}"
    errors = outcome.error_lines
    assert len(errors) == 1, f"expected one `error:` line, got {len(errors)}\n{outcome}"
    line = errors[0]
    for needle in needles:
        assert needle in line, f"{needle!r} not named in the error line {line!r}"
    if before is not None:
        assert_same_files(before, roots, allow_new=allow_new)
    return line


# -- faults: a full disk and a read-only folder, on a real filesystem (root in CI) -------------
def _mount_tmpfs(path: Path, size: str, readonly: bool = False) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


@contextlib.contextmanager
def small_disk(path: Path, size: str = "64k"):
    """A tmpfs of `size` mounted at `path` (a disk that fills up); unmounted afterwards."""
    import pytest

    if not _mount_tmpfs(path, size):
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only(path: Path):
    """Remount the tmpfs at `path` read-only for the duration (root cannot write there either)."""
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(path)], capture_output=True)


def fill_disk(path: Path) -> None:
    """Fill the filesystem holding `path` to the last byte."""
    with open(path / ".filler", "wb", buffering=0) as fh:
        for chunk in (b"\0" * 4096, b"\0"):
            with contextlib.suppress(OSError):
                while True:
                    fh.write(chunk)
