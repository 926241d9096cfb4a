"""Work around a PySide6 6.12 reference-count bug on CPython < 3.12.

With PySide6 6.12 on Python 3.11, every call of a Qt method that returns ``void``
(``processEvents``, ``setVisible``, ``setWindowTitle``...) drops one reference to ``None``
without taking it (measured: 100 calls of ``QApplication.processEvents()`` lower
``sys.getrefcount(None)`` by 100), and some paths do the same to ``True``/``False``.
A GUI session makes millions of such calls, so the count reaches zero and CPython aborts
with "Fatal Python error: none_dealloc" (or "bool_dealloc" at exit).

CPython 3.12 made these singletons immortal (PEP 683), which is what the bindings
assume. Here we do the equivalent for 3.11: raise their reference counts by 2**40 once,
so no realistic session can bring them to zero. The objects are never freed anyway.
"""

from __future__ import annotations

import ctypes
import sys

_BOOST = 1 << 40


def immortalize_singletons() -> bool:
    """Give None, True and False a practically unreachable reference count (CPython < 3.12).

    Returns True when something was changed.
    """
    if sys.implementation.name != "cpython" or sys.version_info >= (3, 12):
        return False
    changed = False
    for obj in (None, True, False, Ellipsis, NotImplemented):
        ref = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt is the first field
        if ref.value < _BOOST:
            ref.value += _BOOST
            changed = True
    return changed
