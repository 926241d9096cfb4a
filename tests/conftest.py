"""Shared fixtures. GUI tests run under Xvfb (pytest-xvfb); QSettings are isolated per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Without Xvfb and without a display, fall back to Qt's offscreen platform.

    pytest-xvfb (which runs first) sets DISPLAY when Xvfb is installed; only when it is
    missing and no display exists do GUI tests use ``offscreen``, where the OpenGL tests
    skip with a reason. Never both DISPLAY and offscreen (see DESIGN.md).
    """
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def data_dir() -> Path:
    return DATA


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory, monkeypatch):
    """Keep QSettings and any config a test writes out of the user's home."""
    home = tmp_path_factory.mktemp("config")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.setenv("LOSSVIEW_SETTINGS_DIR", str(home))
    yield
