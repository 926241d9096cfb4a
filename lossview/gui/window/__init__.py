"""The main window and what hangs off it: menus, messages, start page, timeline bar,
settings, opening runs."""
