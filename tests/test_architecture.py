"""The architecture is checked, not only described: import-linter's contracts (pyproject.toml,
`[tool.importlinter]`) hold for the code, every top-level module has a place in the layer order,
and docs/architecture.md's "Where code goes" says exactly what the contracts say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
KNOWN_TYPES = {"layers", "forbidden", "protected"}  # the kinds this file knows how the docs show


def contracts() -> list[dict[str, Any]]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def layer_modules(layer: str) -> list[str]:
    """The modules of one layer string: 'a | b' (independent) or 'a : b' (may import each other)."""
    return [name.strip().strip("()") for name in re.split(r"[|:]", layer)]


def covers(package: str, module: str) -> bool:
    return module == package or module.startswith(package + ".")


def never_imports(module: str) -> set[str]:
    """What the forbidden and protected contracts forbid `module` (the layer order aside)."""
    out: set[str] = set()
    for c in contracts():
        if c["type"] == "forbidden" and any(covers(s, module) for s in c["source_modules"]):
            out |= set(c["forbidden_modules"])
        if c["type"] == "protected" and not any(covers(a, module) for a in c["allowed_importers"]):
            out |= set(c["protected_modules"])
    return out


def where_code_goes() -> str:
    text = DOC.read_text()
    start = text.index("## Where code goes")
    return text[start : text.index("\n## ", start + 1)]


def table_rows() -> list[tuple[list[str], set[str]]]:
    """(modules of the first column, backticked names of the "never imports" column) per row.
    A first-column path such as `fl/rules.py` or `data/` names the module fedmllm.fl.rules / fedmllm.data."""
    rows = []
    for line in where_code_goes().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        paths = [p for p in re.findall(r"`([^`]+)`", cells[0]) if p.endswith(("/", ".py"))] if cells else []
        if paths:
            modules = ["fedmllm." + p.removesuffix("/").removesuffix(".py").replace("/", ".") for p in paths]
            rows.append((modules, set(re.findall(r"`([^`]+)`", cells[-1]))))
    return rows


def test_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    assert lint.exists(), f"{lint} is missing: install the test extra (pip install -e '.[test]')"
    # --no-cache: no .import_linter_cache folder in the checkout; the whole check takes about a second
    done = subprocess.run([lint, "--no-cache", "--no-logo"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"lint-imports found imports the architecture forbids:\n{done.stdout}{done.stderr}"


def test_only_known_contract_types() -> None:
    types = {c["type"] for c in contracts()}
    unknown = types - KNOWN_TYPES
    assert not unknown, f"teach tests/test_architecture.py how docs/architecture.md shows {unknown} contracts"


def test_every_top_level_module_has_a_layer() -> None:
    (order,) = [c for c in contracts() if c["id"] == "layers"]
    placed = {m for layer in order["layers"] for m in layer_modules(layer)}
    src = ROOT / "src" / "fedmllm"
    names = {p.stem for p in src.glob("*.py") if p.stem not in ("__init__", "__main__")}
    names |= {p.parent.name for p in src.glob("*/__init__.py")}
    missing = sorted(f"fedmllm.{n}" for n in names if f"fedmllm.{n}" not in placed)
    assert not missing, f"give {missing} a layer in pyproject.toml's [tool.importlinter] contract 'layers'"


def test_docs_show_every_layer_order() -> None:
    section = where_code_goes()
    for c in contracts():
        if c["type"] == "layers":
            line = " > ".join(f"`{layer}`" for layer in c["layers"])
            assert line in section, f"docs/architecture.md 'Where code goes' lacks contract {c['id']!r}'s line:\n{line}"


def test_docs_table_says_what_the_contracts_forbid() -> None:
    rows = table_rows()
    assert len(rows) >= 9, "the 'Where code goes' table was not found"
    for modules, listed in rows:
        for module in modules:
            assert listed == never_imports(module), (
                f"docs/architecture.md: the 'never imports' cell of {module} lists {sorted(listed)}, "
                f"the contracts forbid {sorted(never_imports(module))}"
            )


def test_docs_table_has_a_row_for_every_forbidding_contract() -> None:
    documented = {m for modules, _ in table_rows() for m in modules}
    for c in contracts():
        for source in c.get("source_modules", []):
            assert source in documented, f"contract {c['id']!r} forbids imports to {source}, which has no table row"
