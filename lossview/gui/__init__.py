"""Qt front end of lossview (PySide6 + pyqtgraph). Nothing in lossview.core imports it."""
