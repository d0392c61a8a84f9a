"""The layers of the tree: each top-level package imports only those below it, and no test key ships to a gateway.

    payload_codec <- boards <- gateway_daemon <- simulator <- hil_tests <- borne

`firmware/` is MicroPython, apart: it imports none of them, and none imports it (provisioning
copies its files).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("payload_codec", "boards", "gateway_daemon", "simulator", "hil_tests", "borne")
# What ships to a gateway, and the modules that hold test keys, which it must never import.
GATEWAY_PACKAGES = ("payload_codec", "boards", "gateway_daemon")
TEST_KEY_MODULES = ("simulator.test_keys", "payload_codec.vectorgen")


def modules_of(package: str) -> list[Path]:
    return sorted(path for path in (ROOT / package).rglob("*.py") if "node_modules" not in path.parts)


def imported_names(path: Path) -> set[str]:
    """Every absolute module name `path` imports (relative imports stay inside their package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def package_imports(package: str) -> dict[str, set[str]]:
    """The other top-level packages of the tree that `package` imports, with the file of each import."""
    found: dict[str, set[str]] = {}
    for path in modules_of(package):
        if "frozen" in path.parts:
            continue  # MicroPython modules of the virtual board, run inside the VM
        for name in imported_names(path):
            top = name.split(".")[0]
            if top in (*LAYERS, "firmware") and top != package:
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize("package", LAYERS)
def test_a_layer_imports_only_the_layers_below_it(package: str) -> None:
    below = set(LAYERS[: LAYERS.index(package)])
    upward = {top: files for top, files in package_imports(package).items() if top not in below}
    assert not upward, f"{package} imports layers above it or beside it: {upward}"


def test_no_cycle_between_top_level_packages() -> None:
    graph = {package: set(package_imports(package)) for package in LAYERS}
    visiting: list[str] = []

    def visit(package: str) -> None:
        assert package not in visiting, f"import cycle: {' -> '.join([*visiting, package])}"
        visiting.append(package)
        for imported in graph.get(package, ()):
            visit(imported)
        visiting.pop()

    for package in LAYERS:
        visit(package)


@pytest.mark.parametrize("package", GATEWAY_PACKAGES)
def test_nothing_that_ships_to_a_gateway_imports_test_keys(package: str) -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in modules_of(package)
        if path.name != "vectorgen.py" and imported_names(path).intersection(TEST_KEY_MODULES)
    ]
    assert not offenders, f"these modules import test keys: {offenders}"


def test_the_firmware_imports_no_cpython_package_of_the_tree() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(name for name in imported_names(path) if name.split(".")[0] in LAYERS[:-1])
        for path in modules_of("firmware")
    }
    assert not {path: names for path, names in offenders.items() if names}
