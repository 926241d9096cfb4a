"""Persistent settings (QSettings), reached through one factory so tests can isolate them.

Settings live in an INI file. ``LOSSVIEW_SETTINGS_DIR`` (set per test by tests/conftest.py)
moves it; otherwise Qt's user-scope location for organisation "lossview" is used.
Values read back are coerced, since QSettings may return booleans and numbers as strings.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORG = "lossview"
APP = "lossview"
MAX_RECENT = 8
THEMES = ("light", "dark")


def qsettings() -> QSettings:
    """The application's settings store (an INI file)."""
    folder = os.environ.get("LOSSVIEW_SETTINGS_DIR")
    if folder:
        return QSettings(str(Path(folder) / "lossview.ini"), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORG, APP)


def settings_file() -> Path:
    return Path(qsettings().fileName())


def recent_folders() -> list[str]:
    """Recently opened runs, newest first."""
    v = qsettings().value("recent", [])
    if isinstance(v, str):
        v = [v] if v else []
    return [str(p) for p in (v or [])][:MAX_RECENT]


def add_recent(path: str | Path) -> list[str]:
    p = str(Path(path).expanduser().resolve())
    items = [p] + [r for r in recent_folders() if r != p]
    items = items[:MAX_RECENT]
    s = qsettings()
    s.setValue("recent", items)
    s.sync()
    return items


def remove_recent(path: str) -> None:
    s = qsettings()
    s.setValue("recent", [r for r in recent_folders() if r != path])
    s.sync()


def theme() -> str:
    t = str(qsettings().value("theme", "light"))
    return t if t in THEMES else "light"


def set_theme(name: str) -> None:
    if name not in THEMES:
        raise ValueError(f"unknown theme {name!r}")
    s = qsettings()
    s.setValue("theme", name)
    s.sync()


def read_bytes(key: str) -> QByteArray | None:
    v = qsettings().value(key)
    return v if isinstance(v, QByteArray) and not v.isEmpty() else None


def write_bytes(key: str, value: QByteArray) -> None:
    s = qsettings()
    s.setValue(key, value)
    s.sync()


def read_bool(key: str, default: bool = False) -> bool:
    v = qsettings().value(key, default)
    if isinstance(v, str):
        return v.strip().lower() in ("true", "1", "yes")
    return bool(v)


def write_value(key: str, value) -> None:
    s = qsettings()
    s.setValue(key, value)
    s.sync()


#: at most this many run folders remember their model file
MAX_MODEL_FILES = 50


def _model_files() -> dict[str, str]:
    """``run folder -> model file`` (stored as JSON: folder paths hold slashes, which
    QSettings would read as groups)."""
    import json

    raw = qsettings().value("model_files", "")
    try:
        d = json.loads(raw) if isinstance(raw, str) and raw else {}
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in d.items()} if isinstance(d, dict) else {}


def _key(folder: str | Path) -> str:
    return str(Path(folder).expanduser().resolve())


def model_file_for(folder: str | Path) -> str | None:
    """The model file attached to the run at ``folder`` in the GUI, if any (it may have
    been moved or deleted since)."""
    return _model_files().get(_key(folder))


def remember_model_file(folder: str | Path, model_file: str | Path | None) -> None:
    """Remember ``model_file`` for the run at ``folder`` (None: forget it); the newest
    :data:`MAX_MODEL_FILES` are kept."""
    import json

    d = _model_files()
    key = _key(folder)
    d.pop(key, None)
    if model_file:
        d[key] = str(Path(model_file).expanduser().resolve())
    items = list(d.items())[-MAX_MODEL_FILES:]
    write_value("model_files", json.dumps(dict(items)))


def data_file_for(folder: str | Path) -> tuple[str, int | None] | None:
    """The data file (and block size) used for the Hugging Face folder at ``folder`` in
    the GUI, if any (it may have been moved or deleted since)."""
    v = _json_map("data_files").get(_key(folder))
    if not isinstance(v, list) or not v or not isinstance(v[0], str):
        return None
    block = v[1] if len(v) > 1 and isinstance(v[1], int) else None
    return v[0], block


def remember_data_file(folder: str | Path, data_file: str | Path | None,
                       block_size: int | None = None) -> None:
    """Remember ``data_file`` (and ``block_size``) for the Hugging Face folder at
    ``folder`` (None: forget it); the newest :data:`MAX_MODEL_FILES` are kept."""
    import json

    d = _json_map("data_files")
    key = _key(folder)
    d.pop(key, None)
    if data_file:
        d[key] = [str(Path(data_file).expanduser().resolve()), block_size]
    items = list(d.items())[-MAX_MODEL_FILES:]
    write_value("data_files", json.dumps(dict(items)))


def _json_map(name: str) -> dict:
    import json

    raw = qsettings().value(name, "")
    try:
        d = json.loads(raw) if isinstance(raw, str) and raw else {}
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}
