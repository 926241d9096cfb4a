"""PNG export of one panel, and every measurement's tooltip naming its source."""

import re

from PySide6.QtGui import QImage

from lossview.core.analysis.explanations import TIPS
from lossview.core.io.export_csv import metrics_table
from lossview.gui.plotkit.export import save_png

from .conftest import open_and_wait

MEASUREMENTS = ["loss", "grad_norm", "lr", "plateau", "pca", "explained_variance",
                "random_walk_similarity", "wandering", "from_init", "msd", "sharpness",
                "permutation"]


def test_measurement_tooltips_are_one_sentence_with_a_reference():
    for key in MEASUREMENTS:
        text = TIPS[key]
        assert re.search(r"\((?:[A-Z][a-z]+(?: & [A-Z][A-Za-z-]+)?(?: et al\.)? (?:19|20)\d\d)\)",
                         text), key
        body = text.replace("et al.", "et al")
        assert body.count(". ") == 0 and body.endswith("."), key  # one sentence


def test_panel_png_has_the_panel_size(qtbot, window, run_path, tmp_path):
    open_and_wait(qtbot, window, run_path)
    out = save_png(window.trajectory_panel, tmp_path / "traj.png")
    img = QImage(str(out))
    dpr = window.devicePixelRatioF()
    assert (img.width(), img.height()) == (round(window.trajectory_panel.width() * dpr),
                                           round(window.trajectory_panel.height() * dpr))


def test_metrics_table_marks_missing_values_empty(loaded):
    run, _ = loaded
    header, rows = metrics_table(run)
    col = header.index("val_loss")
    # val_loss is logged every 10 steps only
    assert sum(1 for r in rows if r[col] != "") == len(run.metrics["val_loss"])
