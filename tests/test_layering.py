"""lossview.core must stay headless: it never imports Qt or pyqtgraph."""

import ast
import subprocess
import sys
from pathlib import Path

import lossview

CORE = Path(lossview.__file__).parent / "core"
FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "pyqtgraph", "qtpy", "lossview.gui")


def test_core_sources_do_not_import_qt():
    offenders = []
    for f in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{f.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN
                          or n.startswith("lossview.gui")]
    assert offenders == []


def test_importing_all_of_core_loads_no_qt():
    code = (
        "import sys, pkgutil, importlib, lossview.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'lossview.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in %r]\n"
        "print(bad); sys.exit(1 if bad else 0)\n" % (FORBIDDEN,)
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_what_child_processes_import_loads_no_qt():
    """ProcessWorker children import these modules (lossview.gui.jobs, the jobs' own
    imports); they must not pull Qt into a process that has no QApplication."""
    code = (
        "import sys, lossview.core.jobs, lossview.gui.jobs, lossview.gui.loader, lossview.gui.sweep\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in %r]\n"
        "print(bad); sys.exit(1 if bad else 0)\n" % (FORBIDDEN[:-1],)
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
