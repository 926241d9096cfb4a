"""lossview.core must stay headless: importing all of it loads no Qt or pyqtgraph.

The static rule (no such import statement in core) is an import-linter contract
(pyproject.toml, tests/test_contracts.py); this checks at run time what the child
processes that run the app's jobs (all in core) end up loading, third-party imports included."""

import subprocess
import sys

FORBIDDEN = ("PySide6", "shiboken6", "PyQt5", "PyQt6", "pyqtgraph", "qtpy", "OpenGL")


def test_importing_all_of_core_loads_no_qt():
    code = (
        "import sys, pkgutil, importlib, lossview.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'lossview.core.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}\n"
        "       or m.startswith('lossview.gui')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
