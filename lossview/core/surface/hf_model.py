"""Hugging Face folders without code: the model from ``config.json``, the data from a file.

A folder written by ``Trainer`` (``checkpoint-N/``) or ``save_pretrained`` holds
``config.json`` (the architecture and its sizes) and usually the tokenizer. With
``transformers`` installed, :func:`hf_source` rebuilds the model from that config (the
class ``architectures[0]`` names, looked up in ``transformers`` itself), tokenizes the
user's ``--data FILE`` with the tokenizer saved in the folder, and uses the model's own
loss (``outputs.loss`` with ``labels``), in eval mode:

- causal language models (``...ForCausalLM``, ``GPT2LMHeadModel``): the text is tokenized
  as ``tokenizer(text)`` gives it, cut into consecutive blocks of ``block_size`` tokens
  (the incomplete tail dropped), ``labels = input_ids`` (the model shifts them itself);
- sequence classifiers (``...ForSequenceClassification``): JSON lines with ``"text"`` and
  ``"label"``, each text truncated to ``block_size`` tokens, padded per batch with an
  attention mask; ``label`` is a class index, a name in ``config.label2id``, a number
  (``num_labels == 1``: regression) or a list (multi-label).

Batches hold :data:`BATCH` blocks or texts; the loss is the mean over all of them.
Never ``trust_remote_code``: a config or tokenizer with ``auto_map`` (code from the folder
or a hub), or an architecture ``transformers`` does not ship, needs a model file instead.
Nothing is downloaded (``local_files_only=True``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lossview.core.errors import LossviewError
from lossview.core.run import Run

#: Blocks (language models) or texts (classifiers) per batch.
BATCH = 8
#: Block size when ``--block-size`` is not given (capped by the model's positions).
DEFAULT_BLOCK = 128
MODEL_FILE = "a model file is needed: pass --model FILE.py (see docs/surface.md)"
DATA_HELP = ('--data FILE (plain text for a language model; JSON lines with "text" and '
             '"label" for a classifier)')


def hf_config_folder(run: Run) -> Path | None:
    """The folder of the run's Hugging Face ``config.json``: a snapshot's folder, else the
    run's folder or the one above it; None when the run has none."""
    for d in _candidate_folders(run):
        cfg = _read_json(d / "config.json")
        if isinstance(cfg, dict) and ("model_type" in cfg or "architectures" in cfg):
            return d
    return None


def hf_source(run: Run, data_file: str | Path, block_size: int | None = None):
    """A :class:`~lossview.core.surface.usermodel.ModelSource` for a Hugging Face folder:
    the model built from its ``config.json``, the data from ``data_file`` (module doc)."""
    from lossview.core.surface.usermodel import ModelSource, check_names, snapshot_tensors

    folder = hf_config_folder(run)
    if folder is None:
        raise LossviewError(f"--data works for Hugging Face folders (with config.json); this "
                            f"{run.format} folder has none; {MODEL_FILE}")
    data_path = Path(data_file).expanduser()
    if not data_path.is_file():
        raise LossviewError(f"data file not found: {data_path}")
    arch = _architecture(folder)
    tf = _transformers(folder)
    with _quiet(tf):
        config = _config(tf, folder)
        task = _task(tf, arch)
        tokenizer = _tokenizer(tf, run, folder)
        block = _block_size(config, block_size)
        if task == "causal-lm":
            data, what = _lm_batches(tokenizer, data_path, block)
        else:
            data, what = _classifier_batches(tokenizer, config, data_path, block)
        _check_vocab(config, data, folder)
        try:
            hf = getattr(tf, arch)(config)
        except Exception as e:  # noqa: BLE001 - one line, whatever the library raised
            raise LossviewError(f"building {arch} from {folder / 'config.json'} failed: "
                                f"{type(e).__name__}: {_one_line(e)}") from None
        hf = hf.to(torch.float32).eval()
        model = HFLoss(hf)
        check_names(model, run)
        p, b = snapshot_tensors(run, len(run) - 1, model)
        with torch.no_grad():
            for name, t in list(model.named_parameters()) + list(model.named_buffers()):
                if name in p or name in b:
                    t.copy_((p if name in p else b)[name])
            try:  # once, here: a data/model mismatch is one line, and the library's
                model(data[0][0])  # one-time notices are said (quietly) before the surface
            except Exception as e:  # noqa: BLE001
                raise LossviewError(f"{arch} on the first batch of {data_path.name} failed: "
                                    f"{type(e).__name__}: {_one_line(e)}") from None
    note = f"loss: {arch}'s own (outputs.loss {what}"
    origin = f"Hugging Face {arch} from {folder / 'config.json'}, data {data_path.resolve()}"
    return ModelSource(model, model_loss, data, origin, loss_note=note)


class HFLoss(nn.Module):
    """A Hugging Face model whose forward takes a batch dict and returns ``outputs.loss``.

    It shares the model's sub-modules, parameters and buffers (no prefix), so its
    parameter names are the checkpoints' state-dict names and ``functional_call`` with
    those names (tied weights included) evaluates the wrapped model.
    """

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "hf", hf)  # not a registered child: no "hf." prefix
        self._modules = hf._modules
        self._parameters = hf._parameters
        self._buffers = hf._buffers
        self._non_persistent_buffers_set = hf._non_persistent_buffers_set

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.hf(**batch).loss


def model_loss(loss: torch.Tensor, _labels: Any) -> torch.Tensor:
    """The loss the model computed itself (:class:`HFLoss` returns ``outputs.loss``)."""
    return loss


# -- the model ---------------------------------------------------------------------------
def _transformers(folder: Path):
    try:
        import transformers
    except ImportError:
        raise LossviewError(f"rebuilding the Hugging Face model of {folder} from config.json "
                            "needs transformers: pip install transformers") from None
    return transformers


def _architecture(folder: Path) -> str:
    cfg = _read_json(folder / "config.json")
    where = folder / "config.json"
    if not isinstance(cfg, dict):
        raise LossviewError(f"{where} is not a JSON object")
    if cfg.get("auto_map"):
        raise LossviewError(f"{where} names custom code (auto_map), which lossview never runs "
                            f"(no trust_remote_code); {MODEL_FILE}")
    archs = cfg.get("architectures")
    if not isinstance(archs, list) or not archs or not isinstance(archs[0], str):
        raise LossviewError(f"{where} names no architecture; {MODEL_FILE}")
    return archs[0]


def _config(tf, folder: Path):
    try:  # eager attention: plain tensor operations that vmap and double backward support
        return tf.AutoConfig.from_pretrained(str(folder), local_files_only=True,
                                             trust_remote_code=False,
                                             attn_implementation="eager")
    except Exception as e:  # noqa: BLE001
        raise LossviewError(f"transformers {tf.__version__} cannot read "
                            f"{folder / 'config.json'} ({_one_line(e)}); if it needs code "
                            f"from the folder or a hub, {MODEL_FILE}") from None


def _task(tf, arch: str) -> str:
    from transformers.models.auto import modeling_auto as auto

    if not isinstance(getattr(tf, arch, None), type):
        raise LossviewError(f"{arch} is not an architecture of transformers {tf.__version__}: "
                            f"it needs code from the folder or a hub; {MODEL_FILE}")
    if arch in set(auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values()):
        return "causal-lm"
    if arch in set(auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.values()):
        return "classification"
    raise LossviewError(f"lossview rebuilds causal language models and sequence classifiers "
                        f"from --data, not {arch}; {MODEL_FILE}")


def _tokenizer(tf, run: Run, folder: Path):
    for d in [folder] + [d for d in _candidate_folders(run) if d != folder]:
        if (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file():
            tcfg = _read_json(d / "tokenizer_config.json")
            if isinstance(tcfg, dict) and tcfg.get("auto_map"):
                raise LossviewError(f"the tokenizer in {d} names custom code (auto_map), which "
                                    f"lossview never runs; {MODEL_FILE}")
            try:
                return tf.AutoTokenizer.from_pretrained(str(d), local_files_only=True,
                                                        trust_remote_code=False)
            except Exception as e:  # noqa: BLE001
                raise LossviewError(f"cannot load the tokenizer saved in {d}: "
                                    f"{type(e).__name__}: {_one_line(e)}") from None
    raise LossviewError(f"no tokenizer saved in {folder} (tokenizer.json or "
                        "tokenizer_config.json): save it with the model (Trainer(..., "
                        f"processing_class=tokenizer)); or else {MODEL_FILE}")


def _block_size(config, block_size: int | None) -> int:
    limit = next((v for v in (getattr(config, k, None) for k in
                              ("n_positions", "max_position_embeddings", "n_ctx"))
                  if isinstance(v, int) and v > 0), None)
    if block_size is None:
        return min(DEFAULT_BLOCK, limit) if limit else DEFAULT_BLOCK
    if block_size < 2:
        raise LossviewError(f"--block-size must be at least 2, not {block_size}")
    if limit and block_size > limit:
        raise LossviewError(f"--block-size {block_size} is more than the model's {limit} positions")
    return int(block_size)


def _check_vocab(config, data: list, folder: Path) -> None:
    vocab = getattr(config, "vocab_size", None)
    top = max(int(x["input_ids"].max()) for x, _ in data)
    if isinstance(vocab, int) and top >= vocab:
        raise LossviewError(f"the tokenizer saved in {folder} gives token id {top}, but the "
                            f"model's vocabulary has {vocab} entries: they do not belong together")


# -- the data ----------------------------------------------------------------------------
def _records(path: Path) -> tuple[list[dict] | None, str]:
    """JSON lines as a list of objects (None for plain text), and the file's text."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LossviewError(f"cannot read {path}: {_one_line(e)}") from None
    lines = [(n, s) for n, s in enumerate(text.splitlines(), 1) if s.strip()]
    if not lines:
        raise LossviewError(f"{path} is empty: no text to evaluate the loss on")
    first = _parse(lines[0][1])
    if path.suffix.lower() not in (".jsonl", ".json") and not (
            isinstance(first, dict) and "text" in first):
        return None, text
    out = []
    for n, s in lines:
        rec = _parse(s)
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise LossviewError(f'{path}:{n}: not a JSON object with a "text" string')
        out.append(rec)
    return out, text


def _lm_batches(tok, path: Path, block: int) -> tuple[list, str]:
    recs, text = _records(path)
    if recs is None:
        ids = list(tok(text)["input_ids"])
    else:
        ids = [i for r in recs for i in tok(r["text"])["input_ids"]]
    n = len(ids) // block
    if n == 0:
        raise LossviewError(f"{path} has {len(ids)} tokens, less than one block of {block}: "
                            "pass a smaller --block-size or more text")
    blocks = torch.tensor(ids[: n * block], dtype=torch.long).view(n, block)
    data = [({"input_ids": b, "labels": b}, b) for b in blocks.split(BATCH)]
    return data, f"with labels = input_ids) on {n} blocks of {block} tokens of {path.name}"


def _classifier_batches(tok, config, path: Path, block: int) -> tuple[list, str]:
    recs, _ = _records(path)
    if recs is None:
        raise LossviewError(f'{path}: a sequence classifier needs JSON lines with "text" and '
                            '"label" fields, one example per line')
    labels = [_label(config, r, path, n) for n, r in enumerate(recs, 1)]
    enc = tok([r["text"] for r in recs], truncation=True, max_length=block)
    pad = tok.pad_token_id if tok.pad_token_id is not None else config.pad_token_id
    data = []
    for lo in range(0, len(recs), BATCH):
        rows = {k: enc[k][lo:lo + BATCH] for k in ("input_ids", "token_type_ids") if k in enc}
        batch = _pad(rows, pad, getattr(tok, "padding_side", "right"), path)
        y = torch.tensor(labels[lo:lo + BATCH])
        batch["labels"] = y
        data.append((batch, y))
    return data, (f'with labels from "label") on the {len(recs)} texts of {path.name} '
                  f"(cut at {block} tokens)")


def _label(config, rec: dict, path: Path, n: int):
    v = rec.get("label", rec.get("labels"))
    k = int(getattr(config, "num_labels", 2))
    kind = getattr(config, "problem_type", None)
    if kind == "regression" or (kind is None and k == 1):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    elif kind == "multi_label_classification":
        if isinstance(v, list) and len(v) == k:
            return [float(x) for x in v]
    else:
        if isinstance(v, str):
            v = (getattr(config, "label2id", None) or {}).get(v, v)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < k:
            return v
    raise LossviewError(f"{path}:{n}: label {v!r} does not fit the model ({k} labels"
                        f"{', ' + kind if kind else ''}): a class index 0..{k - 1} or a name "
                        "in config.json's label2id")


def _pad(rows: dict[str, list], pad: int | None, side: str, path: Path) -> dict:
    width = max(len(r) for r in rows["input_ids"])
    if pad is None and any(len(r) != width for r in rows["input_ids"]):
        raise LossviewError(f"{path}: the texts differ in length and neither the tokenizer nor "
                            "config.json has a pad token to pad them with")
    out: dict[str, Any] = {}
    for key, seqs in [*list(rows.items()), ("attention_mask", [[1] * len(r) for r in rows["input_ids"]])]:
        fill = pad if key == "input_ids" else 0
        padded = [([fill] * (width - len(s)) + list(s)) if side == "left"
                  else (list(s) + [fill] * (width - len(s))) for s in seqs]
        out[key] = torch.tensor(padded, dtype=torch.long)
    return out


# -- helpers -----------------------------------------------------------------------------
def _candidate_folders(run: Run) -> list[Path]:
    seen: list[Path] = []
    base = run.path if run.path.is_dir() else run.path.parent
    for d in [s.source.parent for s in reversed(run.snapshots)] + [base, base.parent]:
        if d not in seen:
            seen.append(d)
    return seen


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _parse(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


@contextmanager
def _quiet(tf) -> Iterator[None]:
    """transformers' notices (config validation, first-use messages) off while building."""
    log = tf.utils.logging
    old = log.get_verbosity()
    log.set_verbosity_error()
    try:
        yield
    finally:
        log.set_verbosity(old)


def _one_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]
