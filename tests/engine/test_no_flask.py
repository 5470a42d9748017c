"""The engine is Flask-free, so that a consumer in another process can use it."""

import ast
from pathlib import Path

import apiauth.engine

ENGINE = Path(apiauth.engine.__file__).parent


def _imported_modules(path):
    """Return every module name that a Python file imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module


def test_no_engine_module_imports_flask():
    files = sorted(ENGINE.glob("*.py"))
    assert len(files) >= 8
    flask_imports = [
        (path.name, module)
        for path in files
        for module in _imported_modules(path)
        if module.split(".")[0] == "flask" or module.startswith("flask_")
    ]
    assert flask_imports == []
