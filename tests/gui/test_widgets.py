"""The small shared widgets: the Readout's runs of plain and bold text."""

from __future__ import annotations

from lossview.gui.plotkit.widgets import Readout, bold_runs


def test_bold_runs_split_the_one_tag_and_unescape_entities():
    assert bold_runs("step <b>1,000</b> · epoch 2") == [
        ("step ", False), ("1,000", True), (" · epoch 2", False)]
    assert bold_runs("<b>a</b><b>b</b>") == [("a", True), ("b", True)]
    assert bold_runs("x &lt; y &amp; z") == [("x < y & z", False)]
    assert bold_runs("") == []


def _ink_columns(widget) -> list[int]:
    img = widget.grab().toImage()
    bg = img.pixel(img.width() - 1, 0)
    return [x for x in range(img.width())
            if any(img.pixel(x, y) != bg for y in range(img.height()))]


def test_readout_draws_bold_runs_wider_than_plain_ones(qtbot):
    r = Readout(template="step 888,888 snapshot")
    qtbot.addWidget(r)
    r.resize(r.sizeHint())
    r.setText("step 888,888")
    plain = _ink_columns(r)
    r.setText("step <b>888,888</b>")
    bold = _ink_columns(r)
    # the same first word, then the bold digits take more room than the plain ones
    assert plain[0] == bold[0]
    assert bold[-1] > plain[-1]
    assert r.text_width("step <b>888,888</b>") > r.text_width("step 888,888")
    # what text_width says is what is drawn (within a pixel of antialiasing)
    assert abs((bold[-1] + 1 - bold[0]) - r.text_width("step <b>888,888</b>")) <= 2


def test_readout_keeps_its_size_whatever_the_text(qtbot):
    r = Readout(template="step 8,888")
    qtbot.addWidget(r)
    hint = r.sizeHint()
    for text in ("", "s", "step <b>1</b>", "step 8,888,888,888"):
        r.setText(text)
        assert r.sizeHint() == hint
    assert hint.width() >= r.text_width("step 8,888")
    assert hint.height() >= r.fontMetrics().height()
