"""Render resources/lossview.svg to the PNG sizes desktops and PyInstaller want.

Run from the repository root: ``python packaging/render_icon.py`` (needs PySide6's QtSvg,
part of PySide6-Essentials). Writes resources/lossview.png (256 px) and
resources/icons/lossview-<N>.png for the hicolor theme sizes.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = (16, 32, 48, 64, 128, 256)


def render(svg: Path, size: int, out: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    img = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(Qt.GlobalColor.transparent)
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    QSvgRenderer(str(svg)).render(painter)
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not img.save(str(out)):
        raise OSError(f"could not write {out}")


def main() -> int:
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841
    svg = ROOT / "resources" / "lossview.svg"
    render(svg, 256, ROOT / "resources" / "lossview.png")
    for n in SIZES:
        render(svg, n, ROOT / "resources" / "icons" / f"lossview-{n}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
