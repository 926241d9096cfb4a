"""Qt front end of lossview (PySide6 + pyqtgraph). Nothing in lossview.core imports it."""

from lossview.gui._refcount_guard import immortalize_singletons

immortalize_singletons()
