"""A Hugging Face folder gets its surface and sharpness in the window without code
(issue 19, item 6): "Use data file…" on the surface panel's needs-the-model page (or
``lossview open RUN --data FILE``) rebuilds the model from the checkpoint's config.json
and evaluates it on the file; a text too short for one block is one line and the run
stays. The folder is written by the real ``Trainer`` (a tiny GPT-2, a tokenizer trained
here), as in tests/core/surface/test_hf_model.py; nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest

from lossview.gui.window import settings

from .conftest import open_and_wait

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

GRID = 21  # surface grid points per side: the smallest the toolbar offers
WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "park", "while",
         "bird", "sang", "in", "tree", "big", "small", "red", "blue", "fast", "slow"]


def _sentences(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(3, 12, (1,), generator=g))
        out.append(" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (k,), generator=g)))
    return out


def _tokenizer(text: str):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([text], trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]"]))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                                                pad_token="[PAD]")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """``out/checkpoint-{2,4,6}`` of a tiny GPT-2 trained by ``Trainer`` (three: the
    default PCA plane needs three snapshots), and ``text.txt``."""
    root = tmp_path_factory.mktemp("gpt2")
    text = "\n".join(_sentences(60, 0))
    (root / "text.txt").write_text(text)
    tok = _tokenizer(text)
    ids = tok(text)["input_ids"]
    train = [{"input_ids": torch.tensor(ids[i:i + 16]), "labels": torch.tensor(ids[i:i + 16])}
             for i in range(0, len(ids) - 16, 16)]
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_layer=2, n_embd=32, n_head=2,
                                  n_positions=64, pad_token_id=tok.pad_token_id)
    args = transformers.TrainingArguments(
        output_dir=str(root / "out"), max_steps=6, save_steps=2, per_device_train_batch_size=4,
        learning_rate=1e-2, logging_steps=1, report_to=[], use_cpu=True, disable_tqdm=True,
        seed=0)
    transformers.Trainer(model=transformers.GPT2LMHeadModel(cfg), args=args,
                         train_dataset=train, processing_class=tok).train()
    return root


def open_needing_data(qtbot, window, path):
    window.surface_panel.toolbar.set_grid_steps(GRID)
    open_and_wait(qtbot, window, path, timeout=60000)
    panel = window.surface_panel
    qtbot.waitUntil(panel.needs_model, timeout=60000)
    return panel


def curve_points(item) -> np.ndarray:
    x, _ = item.getData()
    return np.asarray([] if x is None else x)


def test_a_data_file_gives_the_surface_and_sharpness(qtbot, window, gpt2):
    from lossview.gui.surface.needs_model import DATA_TEXT, NEEDS_DATA

    folder = gpt2 / "out"
    panel = open_needing_data(qtbot, window, folder)
    view = panel.needs_model_view
    assert view.text.text() == NEEDS_DATA
    assert view.data_button.isVisible() and view.data_button.text() == DATA_TEXT
    assert view.attach_button.isVisible()
    n = window.timeline.count
    assert n == 3 and curve_points(window.diagnostics_panel.c_sharp).size == 0
    messages = []
    window.statusBar().messageChanged.connect(messages.append)

    with qtbot.waitSignal(window.run_loaded, timeout=120000):
        window.opener.use_data_file(str(gpt2 / "text.txt"))
    qtbot.waitUntil(lambda: not window.is_computing(), timeout=180000)

    assert not panel.needs_model() and window.banner.isHidden()
    assert panel.surface is not None, panel.message.text()
    assert panel.surface.loss.shape == (GRID, GRID)
    assert np.isfinite(panel.surface.loss).all()
    assert panel.showing_3d() or panel.stack.currentWidget() is panel.contour
    assert window.timeline.count == n
    assert len(curve_points(window.diagnostics_panel.c_sharp)) >= 2
    assert any("data file text.txt attached" in m for m in messages)
    assert settings.data_file_for(folder) == (str((gpt2 / "text.txt").resolve()), None)
    assert settings.model_file_for(folder) is None


def test_the_data_file_is_remembered_for_the_folder(qtbot, window, gpt2):
    folder = gpt2 / "out"
    settings.remember_data_file(folder, gpt2 / "text.txt", 32)
    window.surface_panel.toolbar.set_grid_steps(GRID)
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    open_and_wait(qtbot, window, folder, timeout=120000)
    assert any("data file text.txt re-attached (remembered for this folder)" in m
               for m in messages)
    assert window.data_file.block_size == 32
    qtbot.waitUntil(lambda: not window.is_computing(), timeout=180000)
    assert not window.surface_panel.needs_model()
    assert np.isfinite(window.surface_panel.surface.loss).all()


def test_a_text_shorter_than_one_block_is_one_line_and_the_run_stays(qtbot, window, gpt2,
                                                                     monkeypatch):
    folder = gpt2 / "out"
    panel = open_needing_data(qtbot, window, folder)
    run, n = window.run, window.timeline.count
    short = gpt2 / "short.txt"
    short.write_text("the cat sat on a mat")

    # the page's "Use data file…", its file dialog answered with the short text
    from lossview.gui.window import run_opening
    asked = []
    monkeypatch.setattr(run_opening.QFileDialog, "getOpenFileName",
                        lambda *a: asked.append(a[-1]) or (str(short), a[-1]))
    panel.needs_model_view.data_button.click()
    assert asked == ["Text or JSON lines (*.txt *.jsonl *.json);;All files (*)"]
    qtbot.waitUntil(window.banner.isVisible, timeout=60000)
    qtbot.waitUntil(lambda: not window.is_loading(), timeout=60000)

    line = window.banner.text()
    assert line.startswith("could not attach data file short.txt: ")
    assert "\n" not in line and "Traceback" not in line
    assert window.run is run and window.timeline.count == n  # nothing was replaced
    assert panel.needs_model() and window.data_file is None
    assert settings.data_file_for(folder) is None


@pytest.mark.parametrize(("argv", "said"), [
    (["--block-size", "32"], "--block-size needs --data FILE"),
    (["--data", "missing.txt"], "no such data file: missing.txt"),
    (["--data", "DATA", "--model", "DATA"], "not both"),
])
def test_open_refuses_data_arguments_that_cannot_work(gpt2, capsys, argv, said):
    from lossview.cli import main

    argv = [str(gpt2 / "text.txt") if a == "DATA" else a for a in argv]
    assert main(["open", str(gpt2 / "out"), *argv]) != 0
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1


def test_open_data_reaches_the_window(gpt2, monkeypatch):
    """``lossview open RUN --data FILE --block-size N`` hands both to the window."""
    from lossview.cli import main
    from lossview.gui import app
    got = {}
    monkeypatch.setattr(app, "run_app", lambda *a, **k: got.update(k) or 0)
    text = str(gpt2 / "text.txt")
    assert main(["open", str(gpt2 / "out"), "--data", text, "--block-size", "32"]) == 0
    assert got["data"] == text and got["block_size"] == 32 and got["model_file"] is None


def test_data_given_at_start_is_used_and_not_remembered(qtbot, window, gpt2):
    """What ``run_app(data=...)`` does: every folder opened without a model file gets it."""
    folder = gpt2 / "out"
    window.opener.set_cli_data_file(str(gpt2 / "text.txt"))
    window.surface_panel.toolbar.set_grid_steps(GRID)
    open_and_wait(qtbot, window, folder, timeout=120000)
    assert window.data_file.name == "text.txt" and window.banner.isHidden()
    qtbot.waitUntil(lambda: not window.is_computing(), timeout=180000)
    assert not window.surface_panel.needs_model()
    assert np.isfinite(window.surface_panel.surface.loss).all()
    assert len(curve_points(window.diagnostics_panel.c_sharp)) >= 2
    assert settings.data_file_for(folder) is None
