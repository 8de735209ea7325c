"""The shared layer ships exactly what the tests ran against."""

from __future__ import annotations

import ast
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIREMENTS = ROOT / "layers" / "shared" / "requirements.txt"


def _pins() -> dict[str, str]:
    pins = {}
    for raw in REQUIREMENTS.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            pins[name.strip()] = pinned.strip()
    return pins


@pytest.mark.parametrize(("name", "pinned"), sorted(_pins().items()))
def test_layer_pins_match_the_tested_versions(name: str, pinned: str) -> None:
    assert pinned, f"{name} must be pinned with =="
    assert version(name) == pinned


def test_layer_package_never_imports_functions_or_the_cli() -> None:
    offenders = []
    for path in (ROOT / "layers" / "shared" / "learnflow").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.name}: {name}"
                for name in names
                if name.split(".")[0] in {"functions", "learnflow_cli", "moto", "werkzeug"}
            ]
    assert offenders == []
