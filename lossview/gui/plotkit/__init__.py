"""Plot machinery shared by the panels: theme (style), axes, markers (cursor), legends,
small widgets, export."""
