"""A folder holding several runs (issue 19, item 3): the window lists them in a chooser
and opens the one picked; Cancel keeps what is shown. And what the loader did, said in one
status line with the whole account behind the info button (item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox

from .conftest import open_and_wait, write_run

torch = pytest.importorskip("torch")


def torch_run(folder: Path, n: int, width: int = 3) -> Path:
    """``torch.save(model.state_dict())`` every 10 steps, as a plain loop does."""
    folder.mkdir(parents=True)
    model = torch.nn.Linear(width, 2)
    for k in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
        torch.save(model.state_dict(), folder / f"model_{10 * k}.pt")
    return folder


@pytest.fixture
def several(tmp_path):
    root = tmp_path / "sweep"
    for name, n in (("lr_0.1", 4), ("lr_0.3", 5), ("lr_1.0", 3)):
        torch_run(root / name, n)
    return root


def chooser_of(qtbot, window, path):
    window.open_path(str(path))
    qtbot.waitUntil(lambda: window.opener.chooser is not None
                    and window.opener.chooser.isVisible(), timeout=30000)
    return window.opener.chooser


def test_several_runs_open_the_one_chosen(qtbot, window, several):
    dialog = chooser_of(qtbot, window, several)
    assert dialog.names() == ["lr_0.1", "lr_0.3", "lr_1.0"]
    texts = [dialog.list.item(i).text() for i in range(dialog.list.count())]
    assert texts == ["lr_0.1  —  4 checkpoints", "lr_0.3  —  5 checkpoints",
                     "lr_1.0  —  3 checkpoints"]
    dialog.list.setCurrentRow(1)
    with qtbot.waitSignal(window.run_loaded, timeout=30000):
        dialog.buttons.button(QDialogButtonBox.StandardButton.Open).click()
    assert Path(window.run.path) == several / "lr_0.3"
    assert window.timeline.count == 5
    assert window.windowTitle().startswith("lr_0.3")


def test_cancel_keeps_the_run_shown(qtbot, window, several, run_path):
    open_and_wait(qtbot, window, run_path)
    run, n = window.run, window.timeline.count
    dialog = chooser_of(qtbot, window, several)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: not window.is_loading(), timeout=10000)
    assert not dialog.isVisible()
    assert window.run is run and window.timeline.count == n
    assert window.statusBar().currentMessage() == "Nothing opened: sweep holds several runs"
    assert window.banner.isHidden()


def test_what_the_loader_did_is_one_status_line_and_the_info_button(qtbot, window, tmp_path):
    folder = torch_run(tmp_path / "ckpts", 6)
    (folder / "model_60.pt").write_bytes(b"not a checkpoint")  # skipped, with why
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    open_and_wait(qtbot, window, folder)
    assert "Opened as torch: 6 checkpoints, no metrics logged, 1 note" in messages
    info = window.run_info
    assert info.isVisible() and info.name.text() == "ckpts"
    lines = info.text().splitlines()
    assert lines[0].startswith("opened as torch: 6 checkpoints (model_0.pt … model_50.pt)")
    assert any(line.startswith("model_60.pt: ") for line in lines)  # the note, whole
    assert "model_60.pt" in info.button.toolTip()
    info.button.click()
    qtbot.waitUntil(lambda: info.popover is not None and info.popover.isVisible(), timeout=5000)
    info.popover.close()


def test_a_lossview_run_says_where_its_metrics_came_from(qtbot, window, tmp_path):
    p = write_run(tmp_path / "walk", n_snap=6)
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    open_and_wait(qtbot, window, p)
    assert "Opened as lossview: 6 checkpoints, metrics from metrics.jsonl" in messages
