"""The benchmark and recipe scripts import only names that avatarsync still has (they are not run by
the suite, so a refactor could break them silently)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("bench/*.py"), *ROOT.glob("recipes/**/*.py"), *ROOT.glob("scripts/*.py")])


def _avatarsync_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "avatarsync":
            for alias in node.names:
                yield node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "avatarsync":
                    yield alias.name, None


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_imports_resolve(script):
    missing = []
    for module, name in _avatarsync_imports(script):
        mod = importlib.import_module(module)
        if name is not None and not hasattr(mod, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ImportError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{script.name} imports names that no longer exist: {missing}"


def test_scripts_found():
    assert any(p.name == "new_language.py" for p in SCRIPTS) and any(p.name == "cli_startup.py" for p in SCRIPTS)
