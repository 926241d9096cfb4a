"""Surfaces and sharpness of Hugging Face folders without code (``--data FILE``).

The folders are written by the real ``Trainer`` (tiny GPT-2 and BERT-for-classification,
a tokenizer trained here with ``tokenizers`` and saved with the model); the truth is the
loss the checkpoint gives when loaded with ``from_pretrained`` and called on the same data.
Nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

from lossview.cli import main
from lossview.core.errors import LossviewError
from lossview.core.io import open_run
from lossview.core.surface.finite import model_loss_series
from lossview.core.surface.usermodel import model_source

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

WORDS = ["the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "park", "while",
         "bird", "sang", "in", "tree", "big", "small", "red", "blue", "fast", "slow"]
BLOCK = 64  # GPT-2's n_positions: the default block size


def _sentences(n: int, seed: int) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(3, 12, (1,), generator=g))
        out.append(" ".join(WORDS[int(i)] for i in torch.randint(len(WORDS), (k,), generator=g)))
    return out


def _tokenizer(text: str, bert: bool):
    """A word-level tokenizer trained on ``text`` (BERT's: [CLS] ... [SEP] around each text)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    special = ["[UNK]", "[PAD]", "[CLS]", "[SEP]"]
    tok.train_from_iterator([text], trainers.WordLevelTrainer(special_tokens=special))
    if bert:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]")


def _train(model, tok, dataset, out, collator=None):
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=6, save_steps=2, per_device_train_batch_size=4,
        learning_rate=1e-2, logging_steps=1, report_to=[], use_cpu=True, disable_tqdm=True,
        seed=0)
    transformers.Trainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                         data_collator=collator).train()


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2")
    text = "\n".join(_sentences(60, 0))
    (root / "text.txt").write_text(text)
    tok = _tokenizer(text, bert=False)
    ids = tok(text)["input_ids"]
    train = [{"input_ids": torch.tensor(ids[i:i + 16]), "labels": torch.tensor(ids[i:i + 16])}
             for i in range(0, len(ids) - 16, 16)]
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=len(tok), n_layer=2, n_embd=32, n_head=2,
                                  n_positions=BLOCK, pad_token_id=tok.pad_token_id)
    _train(transformers.GPT2LMHeadModel(cfg), tok, train, root / "out")
    return root


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    root = tmp_path_factory.mktemp("bert")
    texts = _sentences(48, 1)
    labels = [int("cat" in t.split()) for t in texts]
    tok = _tokenizer(" ".join(texts), bert=True)
    # label names (config.json's label2id) and class indices, both accepted
    lines = [{"text": t, "label": ("pos" if y else "neg") if i % 2 else y}
             for i, (t, y) in enumerate(zip(texts, labels))]
    (root / "data.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    train = [dict(tok(t), labels=y) for t, y in zip(texts, labels)]
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=BLOCK, num_labels=2,
                                  id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1},
                                  pad_token_id=tok.pad_token_id)
    _train(transformers.BertForSequenceClassification(cfg), tok, train, root / "out",
           transformers.DataCollatorWithPadding(tok))
    return root, texts, labels


def _gpt2_truth(ck) -> float:
    """The checkpoint's loss on the text, computed here: ``from_pretrained`` and the model's
    own loss on consecutive blocks of BLOCK tokens."""
    tok = transformers.AutoTokenizer.from_pretrained(ck)
    model = transformers.AutoModelForCausalLM.from_pretrained(ck).eval()
    ids = tok((ck.parent.parent / "text.txt").read_text())["input_ids"]
    n = len(ids) // BLOCK
    blocks = torch.tensor(ids[: n * BLOCK]).view(n, BLOCK)
    with torch.no_grad():
        return float(model(input_ids=blocks, labels=blocks).loss)


def test_gpt2_loss_at_each_checkpoint_equals_from_pretrained(gpt2):
    run = open_run(gpt2 / "out")
    assert run.format == "hf-trainer" and list(run.steps) == [2, 4, 6]
    src = model_source(run, data=gpt2 / "text.txt")
    # names line up with the checkpoints: lm_head is wte (tied), stored once
    assert "lm_head.weight" not in dict(src.model.named_parameters())
    assert "GPT2LMHeadModel's own" in src.loss_note and "blocks of 64 tokens" in src.loss_note
    series = model_loss_series(run, source=src)
    truth = [_gpt2_truth(gpt2 / "out" / f"checkpoint-{s}") for s in (2, 4, 6)]
    np.testing.assert_allclose(series.values, truth, rtol=0, atol=1e-5)
    assert truth[0] != pytest.approx(truth[-1], abs=1e-3)  # the snapshots do differ


def test_gpt2_surface_command_centre_is_the_checkpoint_loss(gpt2, tmp_path, capsys):
    out = tmp_path / "s.npz"
    rc = main(["surface", str(gpt2 / "out"), "--data", str(gpt2 / "text.txt"), "--steps", "5",
               "--span", "0.5", "--no-cache", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "GPT2LMHeadModel's own (outputs.loss with labels = input_ids)" in printed
    s = np.load(out)
    assert s["loss"].shape == (5, 5) and np.isfinite(s["loss"]).all()
    np.testing.assert_allclose(s["coords"][-1], 0.0, atol=1e-6)  # the plane's origin
    truth = _gpt2_truth(gpt2 / "out" / "checkpoint-6")
    assert s["loss"][2, 2] == pytest.approx(truth, abs=1e-5)
    assert s["true_loss"][-1] == pytest.approx(truth, abs=1e-5)
    assert np.ptp(s["loss"]) > 1e-3  # a real surface, not a constant


def test_gpt2_block_size_changes_the_blocks(gpt2):
    run = open_run(gpt2 / "out")
    src = model_source(run, data=gpt2 / "text.txt", block_size=16)
    n = sum(len(y) for _, y in src.data)
    ids = transformers.AutoTokenizer.from_pretrained(gpt2 / "out" / "checkpoint-6")(
        (gpt2 / "text.txt").read_text())["input_ids"]
    assert n == len(ids) // 16 and all(y.shape[1] == 16 for _, y in src.data)
    with pytest.raises(LossviewError, match="more than the model's 64 positions"):
        model_source(run, data=gpt2 / "text.txt", block_size=65)
    with pytest.raises(LossviewError, match="--data and --block-size are for Hugging Face"):
        model_source(run, gpt2 / "model.py", data=gpt2 / "text.txt")


def test_save_pretrained_folders_sharded_with_the_tokenizer_one_level_up(gpt2, tmp_path, capsys):
    """One ``save_pretrained(max_shard_size=...)`` folder per step, the tokenizer saved
    once beside them: the config is each step's, the tokenizer the run folder's."""
    root = tmp_path / "steps"
    for s in (2, 6):
        model = transformers.AutoModelForCausalLM.from_pretrained(gpt2 / "out" / f"checkpoint-{s}")
        model.save_pretrained(root / f"step_{s}", max_shard_size="20KB")
    transformers.AutoTokenizer.from_pretrained(gpt2 / "out" / "checkpoint-2").save_pretrained(root)
    assert len(list((root / "step_6").glob("model-*.safetensors"))) > 1
    run = open_run(root)
    series = model_loss_series(run, source=model_source(run, data=gpt2 / "text.txt"))
    truth = [_gpt2_truth(gpt2 / "out" / f"checkpoint-{s}") for s in (2, 6)]
    np.testing.assert_allclose(series.values, truth, rtol=0, atol=1e-5)
    # these folders logged no loss: `analyze --data` makes that series the run's loss
    capsys.readouterr()
    assert main(["analyze", str(root), "--data", str(gpt2 / "text.txt"), "--json",
                 "--no-sharpness"]) == 0
    rep = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(rep["metrics"]["loss_full"]["values"], truth, rtol=0, atol=1e-5)
    assert rep["answers"]["loss"]["metric"] == "loss_full"


def test_gpt2_json_lines_texts_are_tokenized_one_by_one(gpt2, tmp_path):
    lines = (gpt2 / "text.txt").read_text().splitlines()
    data = tmp_path / "lines.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    run = open_run(gpt2 / "out")
    [value] = model_loss_series(run, source=model_source(run, data=data, block_size=32),
                                indices=[0]).values
    ck = gpt2 / "out" / "checkpoint-2"
    tok = transformers.AutoTokenizer.from_pretrained(ck)
    ids = [i for t in lines for i in tok(t)["input_ids"]]
    blocks = torch.tensor(ids[: len(ids) // 32 * 32]).view(-1, 32)
    with torch.no_grad():
        truth = float(transformers.AutoModelForCausalLM.from_pretrained(ck).eval()(
            input_ids=blocks, labels=blocks).loss)
    assert value == pytest.approx(truth, abs=1e-5)


def test_bert_classifier_loss_equals_from_pretrained_per_example(bert, tmp_path, capsys):
    root, texts, labels = bert
    ck = root / "out" / "checkpoint-6"
    run = open_run(root / "out")
    src = model_source(run, data=root / "data.jsonl")
    [value] = model_loss_series(run, source=src, indices=[-1]).values
    # truth: each text alone (no padding), cross-entropy against its label, averaged
    tok = transformers.AutoTokenizer.from_pretrained(ck)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(ck).eval()
    with torch.no_grad():
        per = [float(torch.nn.functional.cross_entropy(
            model(**tok(t, return_tensors="pt")).logits, torch.tensor([y])))
            for t, y in zip(texts, labels)]
    assert value == pytest.approx(float(np.mean(per)), abs=1e-5)
    out = tmp_path / "b.npz"
    rc = main(["surface", str(root / "out"), "--data", str(root / "data.jsonl"), "--steps", "3",
               "--span", "0.5", "--no-cache", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "BertForSequenceClassification's own" in capsys.readouterr().out
    assert np.load(out)["loss"][1, 1] == pytest.approx(float(np.mean(per)), abs=1e-5)


def test_analyze_data_measures_sharpness_of_the_rebuilt_model(gpt2, capsys):
    rc = main(["analyze", str(gpt2 / "out"), "--data", str(gpt2 / "text.txt"), "--json"])
    assert rc == 0, capsys.readouterr().err
    sh = json.loads(capsys.readouterr().out)["sharpness"]
    assert sh["steps"] == [2, 4, 6] and "GPT2LMHeadModel's own" in sh["loss_note"]
    # truth: the top Hessian eigenvalue at checkpoint-6 by power iteration on the model
    # from_pretrained loaded, with double-backward Hessian-vector products
    ck = gpt2 / "out" / "checkpoint-6"
    model = transformers.AutoModelForCausalLM.from_pretrained(ck, attn_implementation="eager").eval()
    ids = transformers.AutoTokenizer.from_pretrained(ck)((gpt2 / "text.txt").read_text())["input_ids"]
    n = len(ids) // BLOCK
    blocks = torch.tensor(ids[: n * BLOCK]).view(n, BLOCK)
    params = list(model.parameters())
    loss = model(input_ids=blocks, labels=blocks).loss
    grads = torch.autograd.grad(loss, params, create_graph=True)
    v = [torch.randn_like(p) for p in params]
    lam = 0.0
    for _ in range(300):
        norm = torch.sqrt(sum((x * x).sum() for x in v))
        v = [x / norm for x in v]
        hv = torch.autograd.grad(grads, params, v, retain_graph=True)
        new = float(sum((a * b).sum() for a, b in zip(hv, v)))
        v = [h.detach() for h in hv]
        if abs(new - lam) < 1e-7 * abs(new):
            break
        lam = new
    assert sh["sharpness"][-1] == pytest.approx(new, rel=1e-3)


def test_custom_code_config_needs_a_model_file(gpt2, tmp_path, capsys):
    ck = tmp_path / "custom" / "checkpoint-2"
    shutil.copytree(gpt2 / "out" / "checkpoint-2", ck)
    cfg = json.loads((ck / "config.json").read_text())
    cfg["architectures"] = ["MyGPT"]
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_my.MyGPT"}
    (ck / "config.json").write_text(json.dumps(cfg))
    rc = main(["surface", str(ck.parent), "--data", str(gpt2 / "text.txt"), "--steps", "3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "auto_map" in err and "model file" in err and "--model FILE.py" in err


def test_without_data_or_with_unfit_data_one_line(gpt2, bert, capsys):
    rc = main(["surface", str(gpt2 / "out"), "--steps", "3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "--data FILE" in err
    root = bert[0]
    rc = main(["surface", str(root / "out"), "--data", str(gpt2 / "text.txt"), "--steps", "3"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and 'JSON lines with "text" and "label"' in err
    bad = root / "bad.jsonl"
    bad.write_text('{"text": "the cat", "label": 0}\n{"text": "a dog", "label": 7}\n')
    with pytest.raises(LossviewError, match=r"bad.jsonl:2: label 7 does not fit"):
        model_source(open_run(root / "out"), data=bad)
    short = root / "short.txt"
    short.write_text("the cat sat")
    with pytest.raises(LossviewError, match="less than one block of 64"):
        model_source(open_run(gpt2 / "out"), data=short)


def test_without_transformers_one_line(gpt2, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an uninstalled one gives
    with pytest.raises(LossviewError, match="needs transformers: pip install transformers"):
        model_source(open_run(gpt2 / "out"), data=gpt2 / "text.txt")
