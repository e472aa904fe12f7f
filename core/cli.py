"""The command line. Each command lives in the core module of its concept, which exposes
`add_arguments(parser)` and `main(args) -> int`; a module is imported only when its command runs,
so `python -m core --help` stays fast (no torch, no NeMo).

Every command prints one line `error: ...` and exits 2 on bad input (VoxSAEError).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from core.errors import VoxSAEError

# command -> (module, one-line help), in the order data flows
COMMANDS: dict[str, tuple[str, str]] = {
    "demo-corpus": (
        "core.democorpus.build",
        "synthesise and embed the embedded default workspace (data/demo)",
    ),
    "ingest": ("core.workspace.ingest", "segment and embed a folder of audio into a workspace"),
    "import-embeddings": (
        "core.workspace.import_embeddings",
        "make a workspace from an embeddings file + metadata CSV",
    ),
    "summary": ("core.workspace.summary", "print a workspace's corpus summary and linear-probe accuracies"),
    "train": ("core.training.grid", "train the grid of SAEs (arch x latents x K) on a workspace"),
    "identify": (
        "core.analysis.identification",
        "find the latent that detects an attribute value, per model",
    ),
    "steer": ("core.analysis.steering", "switch a latent on/off and measure delta_s (paper Eqs. 1-3)"),
    "analyze": (
        "core.analysis.analyze",
        "run the default analyses (identify, grid, splits, steering, suggestions)",
    ),
    "seeds": (
        "core.analysis.seeds",
        "train and analyse the grid at several seeds: every report figure as mean and spread",
    ),
    "continuous": (
        "core.analysis.continuous",
        "correlate latents with continuous attributes (pitch, rate, ...) and test for binning",
    ),
    "universality": (
        "core.analysis.universality",
        "match the latents of two SAEs (seeds, sizes, embedders) by activation correlation",
    ),
    "dashboard-cache": (
        "core.dashboard.cache",
        "precompute what the dashboard reads (latent index of every model, UMAP map)",
    ),
    "report": ("core.analysis.report", "write the HTML report (and its JSON) for a workspace"),
}


class OneLineErrors(argparse.ArgumentParser):
    """argparse's refusals (an unknown flag, a value of the wrong type) as one `error:` line like
    every other refusal, instead of a usage block; `--help` still prints the usage."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="python -m core",
        description="VoxSAE: sparse autoencoders on speaker embeddings.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if argv and argv[0] == name:
            module = importlib.import_module(module_name)
            module.add_arguments(cmd)
            cmd.set_defaults(_handler=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args._handler(args) or 0)
    except VoxSAEError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine said no (disk full, read-only, permission): say where
        print(f"error: {_os_error_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "error: out of memory (try fewer or smaller models, or a smaller --batch-size)", file=sys.stderr
        )
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


_WRITE_ERRNOS = {"ENOSPC", "EROFS", "EDQUOT", "EFBIG"}


def _os_error_line(exc: OSError) -> str:
    import errno

    where = exc.filename or "a file"
    why = exc.strerror or str(exc)
    if errno.errorcode.get(exc.errno or 0) in _WRITE_ERRNOS:
        return f"cannot write {where}: {why}"
    return f"{where}: {why}"
