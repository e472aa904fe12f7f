"""core/ in the order data flows: a layer imports only the layers before it (and the top-level
cli/constants/errors/atomic/filehash), so the pipeline reads from the folder names alone."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"
ORDER = ["audio", "embedders", "workspace", "sae", "training", "analysis", "labels", "dashboard"]
TOP = {"constants", "errors", "atomic", "filehash"}
# beside the pipeline: builds the default corpus from the first three layers; nothing imports it
BESIDE = {"democorpus": {"audio", "embedders", "workspace"}}


def allowed(package: str) -> set[str]:
    if package in BESIDE:
        return BESIDE[package] | TOP | {package}
    return set(ORDER[: ORDER.index(package) + 1]) | TOP


def core_imports(path: Path) -> set[str]:
    """The core subpackages/modules a file imports (core.X... -> X)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("core"):
            parts = node.module.split(".")
            if len(parts) > 1:
                out.add(parts[1])
            else:  # from core import atomic
                out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("core."))
    return out


def test_every_layer_imports_only_layers_before_it():
    wrong = []
    for package in [*ORDER, *BESIDE]:
        for path in sorted((CORE / package).rglob("*.py")):
            bad = core_imports(path) - allowed(package)
            if bad:
                wrong.append(f"{path.relative_to(CORE)} imports {sorted(bad)}")
    assert not wrong, "\n".join(wrong)


def test_nothing_in_the_pipeline_imports_the_demo_corpus():
    users = [
        str(p.relative_to(CORE))
        for package in ORDER
        for p in (CORE / package).rglob("*.py")
        if "democorpus" in core_imports(p)
    ]
    assert not users, users


def test_every_package_says_what_it_holds_and_may_import():
    for package in [*ORDER, *BESIDE]:
        doc = ast.get_docstring(ast.parse((CORE / package / "__init__.py").read_text())) or ""
        assert "import" in doc.lower() and len(doc) > 80, f"core/{package}/__init__.py: {doc!r}"
