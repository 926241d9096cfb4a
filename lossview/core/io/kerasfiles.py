"""Keras 3 checkpoints: ``.weights.h5`` files and ``.keras`` archives (format ``"keras"``).

``ModelCheckpoint("weights.{epoch:02d}.weights.h5", save_weights_only=True)`` writes the
weights as HDF5; ``ModelCheckpoint("model.{epoch:02d}.keras")`` writes a zip holding
``config.json``, ``metadata.json`` and the same HDF5 as ``model.weights.h5``, which is read
from inside the zip (h5py opens the member as a file object; nothing is extracted).
Reading needs only ``h5py`` (the ``lossview[keras]`` extra), never keras itself.

Keras stores each layer's variables as ``<path>/vars/0``, ``vars/1``... where ``<path>``
is the layer's place in the model: ``layers/<class in snake case>[_N]`` inside a
Sequential or Functional model (``layers/dense_1``), the attribute name inside a layer or
subclassed model (``block/layers/dense``, ``lstm/cell``). Those paths, not the layer names,
are what Keras matches when it loads weights (layer names are generated and change when a
model is rebuilt), so they name the tensors, with the ``layers`` levels left out:
``dense_1.kernel``, ``block.dense.bias``. The variable names (``kernel``, ``bias``,
``gamma``, ``moving_mean``...) are not stored; they are told by the layer's class (from the
path, the layer's name, or the archive's ``config.json``) for Keras' built-in layers, else
``var0``, ``var1``... Tensors keep Keras' layout (a Dense kernel is ``(in, out)``, the
transpose of PyTorch's ``weight``). BatchNormalization's ``moving_mean`` and
``moving_variance`` are buffers, not weights. The ``optimizer`` group is never read.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lossview.core.errors import LossviewError
from lossview.core.io.common import assemble_run
from lossview.core.io.filescan import (
    KERAS_SUFFIXES,
    assemble_or_explain,
    natural_key,
    one_line,
    summarize_ignored,
)
from lossview.core.io.naming import name_position
from lossview.core.run import MetricSeries, Run, Snapshot, TensorDict

EXTRA = "pip install lossview[keras]"
WEIGHTS_MEMBER = "model.weights.h5"
BUFFER_VARS = ("moving_mean", "moving_variance")

_KERNEL_BIAS = ("kernel", "bias")
_RNN_CELL = ("kernel", "recurrent_kernel", "bias")
#: Variable names of Keras' built-in layers in the order ``save_own_variables`` writes them,
#: by the layer class in snake case. Layers whose optional variables leave a count that
#: fits only one way are named by count; the rest need the archive's config.
_VARS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys((
        "dense", "einsum_dense", "conv1d", "conv2d", "conv3d", "conv1d_transpose",
        "conv2d_transpose", "conv3d_transpose", "depthwise_conv1d", "depthwise_conv2d",
        # MultiHeadAttention's EinsumDense sub-layers, by attribute name
        "query_dense", "key_dense", "value_dense", "output_dense"), _KERNEL_BIAS),
    "separable_conv1d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "separable_conv2d": ("depthwise_kernel", "pointwise_kernel", "bias"),
    "embedding": ("embeddings",),
    "p_re_lu": ("alpha",),
    "lstm_cell": _RNN_CELL, "gru_cell": _RNN_CELL, "simple_rnn_cell": _RNN_CELL,
    "batch_normalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "layer_normalization": ("gamma", "beta"),
    "group_normalization": ("gamma", "beta"),
}
#: Layers whose first variables are optional (``scale`` -> gamma, ``center`` -> beta).
_SCALE_CENTER = ("batch_normalization", "layer_normalization", "group_normalization")


def is_keras_file(path: Path | str) -> bool:
    return Path(path).name.lower().endswith(KERAS_SUFFIXES)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise LossviewError(f"reading Keras checkpoints (.weights.h5, .keras) needs h5py: "
                            f"{EXTRA}") from None
    return h5py


def snake_case(name: str) -> str:
    """Keras' ``to_snake_case``: ``Conv2D`` -> ``conv2d``, ``PReLU`` -> ``p_re_lu``."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _layer_configs(config: Any) -> dict[str, tuple[str, dict]]:
    """layer name -> (class in snake case, its config), from a ``.keras`` ``config.json``."""
    out: dict[str, tuple[str, dict]] = {}

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            cfg = obj.get("config")
            if isinstance(obj.get("class_name"), str) and isinstance(cfg, dict) \
                    and isinstance(cfg.get("name"), str):
                out.setdefault(cfg["name"], (snake_case(obj["class_name"]), cfg))
            for v in obj.values():
                walk(v)
        elif isinstance(obj, list):
            for v in obj:
                walk(v)

    walk(config)
    return out


def _names_for(cls: str, n: int, cfg: dict | None) -> tuple[str, ...] | None:
    names = _VARS.get(cls)
    if names is None:
        return None
    if len(names) == n:
        return names
    if cls in _SCALE_CENTER:
        rest = names[2:]  # BatchNormalization's statistics are always there
        if n == len(rest):
            return rest
        if cfg is not None and "scale" in cfg and "center" in cfg:
            picked = tuple(v for v, on in (("gamma", cfg["scale"]), ("beta", cfg["center"])) if on)
            if len(picked) + len(rest) == n:
                return picked + rest
        # gamma or beta alone (scale=False or center=False): only a config tells which
        return ("var0", *rest) if n == len(rest) + 1 and rest else None
    if n == len(names) - 1 and names[-1] == "bias":  # use_bias=False
        return names[:-1]
    return None


def variable_names(parts: Sequence[str], layer_name: str, n: int,
                   configs: dict[str, tuple[str, dict]]) -> list[str]:
    """Names of the ``n`` variables of the layer at h5 path ``parts`` (``vars/0``...)."""
    strip = lambda s: re.sub(r"_\d+$", "", s)  # noqa: E731 - dense_3 -> dense
    candidates: list[tuple[str, dict | None]] = []
    if layer_name in configs:
        candidates.append(configs[layer_name])
    by_path = [(strip(parts[-1]), None)] if parts else []
    by_name = [(strip(layer_name), None)] if layer_name else []
    # in a Sequential/Functional ``layers`` list the path is the class; elsewhere it is an
    # attribute name and the layer's (usually generated) name tells the class better
    in_list = len(parts) >= 2 and parts[-2] == "layers"
    candidates += by_path + by_name if in_list else by_name + by_path
    for cls, cfg in candidates:
        names = _names_for(cls, n, cfg)
        if names:
            return list(names)
    return [f"var{i}" for i in range(n)]


def _var_groups(f) -> list[tuple[tuple[str, ...], Any]]:
    """``(path parts, vars group)`` of every layer with variables, the optimizer left out."""
    h5py = _h5py()
    found = []

    def visit(name: str, obj: Any) -> None:
        parts = tuple(name.split("/"))
        if parts[0] == "optimizer" or parts[-1] != "vars" or not isinstance(obj, h5py.Group):
            return
        keys = list(obj.keys())
        if keys and all(k.isdigit() and isinstance(obj[k], h5py.Dataset) for k in keys):
            found.append((parts[:-1], obj))

    f.visititems(visit)
    return sorted(found, key=lambda e: natural_key("/".join(e[0])))


def _dtype(ds) -> str:
    return "bfloat16" if ds.attrs.get("dtype") in ("bfloat16", b"bfloat16") else str(ds.dtype)


def tensor_layout(f, config: Any = None) -> tuple[dict, dict, dict]:
    """``(info, h5 paths, layer names)`` of an open Keras weights file: tensor name ->
    (shape, dtype), tensor name -> dataset path, tensor-name prefix -> Keras layer name."""
    configs = _layer_configs(config) if config is not None else {}
    rows = []
    for parts, group in _var_groups(f):
        keys = sorted(group.keys(), key=int)
        layer = group.attrs.get("name", "")
        layer = layer.decode() if isinstance(layer, bytes) else str(layer)
        rows.append((parts, layer, keys, variable_names(parts, layer, len(keys), configs), group))
    short = [".".join(p for p in parts if p != "layers") for parts, *_ in rows]
    if len(set(short)) < len(short):  # leaving out "layers" made two paths one: keep them
        short = [".".join(parts) for parts, *_ in rows]
    info, paths, layers = {}, {}, {}
    for prefix, (_parts, layer, keys, names, group) in zip(short, rows):
        if layer and layer != prefix:
            layers[prefix or "(model)"] = layer
        for key, var in zip(keys, names):
            name = f"{prefix}.{var}" if prefix else var
            ds = group[key]
            info[name] = (tuple(int(s) for s in ds.shape), _dtype(ds))
            paths[name] = ds.name
    return info, paths, layers


@contextmanager
def open_weights(path: Path) -> Iterator[tuple[Any, Any]]:
    """``(h5 file, config or None)`` of a ``.weights.h5`` file or a ``.keras`` archive."""
    h5py = _h5py()
    if path.suffix.lower() == ".keras":
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            if WEIGHTS_MEMBER not in names:
                raise ValueError(f"the archive holds no {WEIGHTS_MEMBER}")
            config = json.loads(z.read("config.json")) if "config.json" in names else None
            with z.open(WEIGHTS_MEMBER) as fh, h5py.File(fh, "r") as f:
                yield f, config
    else:
        with h5py.File(path, "r") as f:
            yield f, None


def to_array(ds) -> np.ndarray:
    """A dataset's values; bfloat16 (stored as 2 opaque bytes) and float16 become float32."""
    a = np.asarray(ds[()])
    if _dtype(ds) == "bfloat16":
        bits = np.ascontiguousarray(a).view("<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(ds.shape)
    return a.astype(np.float32) if a.dtype == np.float16 else a


class KerasReader:
    """Reads one snapshot's tensors from its ``.weights.h5`` file or ``.keras`` archive."""

    format = "keras"

    def read(self, snapshot: Snapshot) -> TensorDict:
        try:
            with open_weights(Path(snapshot.source)) as (f, _):
                return {name: to_array(f[p]) for name, p in snapshot.meta["h5"].items()}
        except LossviewError:
            raise
        except Exception as e:  # noqa: BLE001 - a file damaged after opening
            name = Path(snapshot.source).name
            raise LossviewError(f"cannot read {name}: {one_line(e)}") from None


def keras_position(path: Path) -> tuple[int | None, str]:
    """``(position, unit)`` of a ModelCheckpoint file name. Keras numbers files by epoch
    (``{epoch}`` is 1-based) and fills the other fields with logged floats, so the last
    integer that is not part of a decimal is the epoch (``model-05-0.32.keras``), unless the
    name announces a step (``step_500``) or an epoch by word or template (``epoch_3``,
    ``weights.05-0.32``)."""
    name = path.name
    core = name[: -len(next(s for s in KERAS_SUFFIXES if name.lower().endswith(s)))]
    pos, epoch, _ = name_position(name)
    if re.search(r"(?:step|iter)[-_=]?\d", core, re.I):
        return pos, "step"
    if epoch is not None:
        return epoch, "epoch"
    ints = [m.group(0) for m in re.finditer(r"\d+(?:\.\d+)?", core) if "." not in m.group(0)]
    return (int(ints[-1]), "epoch") if ints else (None, "step")


def optimizer_settings(config: Any) -> dict | None:
    """The settings in a ``.keras`` archive's ``compile_config`` (plain JSON)."""
    opt = (config or {}).get("compile_config", {}) if isinstance(config, dict) else {}
    opt = opt.get("optimizer") if isinstance(opt, dict) else None
    if not isinstance(opt, dict) or not isinstance(opt.get("config"), dict):
        return None
    c = opt["config"]
    num = lambda k: float(c[k]) if isinstance(c.get(k), (int, float)) else None  # noqa: E731
    betas = [num("beta_1"), num("beta_2")] if "beta_1" in c and "beta_2" in c else None
    return {"name": str(opt.get("class_name", "")).lower() or None, "lr": num("learning_rate"),
            "momentum": num("momentum"),
            "nesterov": c["nesterov"] if isinstance(c.get("nesterov"), bool) else None,
            "betas": betas, "eps": num("epsilon"), "weight_decay": num("weight_decay"),
            "where": "compile_config of config.json"}


def scan_keras_files(files: Sequence[Path]) -> tuple[list, dict, list[str]]:
    """``(Snapshot, info)`` entries, the first file's layer names, and warnings."""
    found, warnings, layer_names = [], [], {}
    for f in files:
        try:
            with open_weights(f) as (h5, config):
                info, paths, layers = tensor_layout(h5, config)
        except LossviewError:
            raise
        except Exception as e:  # noqa: BLE001 - any damaged file is named and skipped
            warnings.append(f"skipped {f.name}: not a readable Keras file ({one_line(e)})")
            continue
        if not info:
            warnings.append(f"skipped {f.name}: holds no layer variables")
            continue
        layer_names = layer_names or layers
        pos, unit = keras_position(f)
        meta: dict[str, Any] = {"position": unit, "h5": paths}
        if f.suffix.lower() == ".keras":
            meta["optimizer"] = optimizer_settings(config)
        found.append((f, pos, unit, meta, info))
    entries = []
    unnumbered = sorted((e for e in found if e[1] is None), key=lambda e: natural_key(e[0].name))
    if unnumbered and len(unnumbered) < len(found):
        # ModelCheckpoint(save_best_only=True) writes a copy of an earlier epoch: left out;
        # any other number-less file (model.save("final.keras")) goes after the numbered ones
        best = [e for e in unnumbered if e[0].name.lower().startswith("best")]
        if best:
            warnings.append(summarize_ignored([e[0] for e in best], "a best-only copy of one "
                                              "of the numbered checkpoints"))
        last = max(e[1] for e in found if e[1] is not None)
        unit = "epoch" if all(e[2] == "epoch" for e in found if e[1] is not None) else "step"
        rest = [e for e in unnumbered if e not in best]
        for k, e in enumerate(rest):
            warnings.append(f"{e[0].name} has no {unit} number in its name: placed at {unit} "
                            f"{last + 1 + k}, after the last numbered one ({last})")
        found = [e for e in found if e[1] is not None] + [
            (f, last + 1 + k, unit, {**m, "position": unit}, i)
            for k, (f, _, _, m, i) in enumerate(rest)]
    elif len(found) > 1 and unnumbered:
        warnings.append("no file name holds an epoch number; snapshots are ordered by name")
        ordered = sorted(found, key=lambda e: natural_key(e[0].name))
        found = [(f, rank, "step", {**m, "position": "step"}, i)
                 for rank, (f, _, _, m, i) in enumerate(ordered)]
    for f, pos, unit, meta, info in found:
        epoch = float(pos) if unit == "epoch" and pos is not None else None
        entries.append((Snapshot(step=int(pos or 0), source=f, epoch=epoch, meta=meta), info))
    return entries, layer_names, warnings


def keras_metrics(files: Sequence[Path]) -> tuple[dict[str, MetricSeries], list[Path], list[str]]:
    """Loss tables among ``files``. A table counted in epochs (CSVLogger's ``epoch`` column,
    0-based) is shifted by one to ModelCheckpoint's 1-based ``{epoch}``, so the loss of the
    first epoch sits with ``weights.01``."""
    from lossview.core.io.metricfiles import folder_metrics

    return folder_metrics(list(files), epoch_offset=1)


def open_keras(path: Path) -> Run:
    """A folder of Keras checkpoints (or one file) as a Run in epochs."""
    from lossview.core.io.filescan import is_non_weight_file, visible_files
    from lossview.core.io.foreign import checkpoint_folder
    from lossview.core.io.optimizer import attach_from_snapshots

    path = Path(path)
    warnings: list[str] = []
    spec: dict[str, Any] = {"source": "keras", "weights_layout": "keras (kernels are (in, out))"}
    metrics: dict[str, MetricSeries] = {}
    if path.is_file():
        files = [path]
    else:
        folder, kinds = checkpoint_folder(path)
        files = [f for f, k in kinds.items() if k == "keras"]
        # save_weights(max_shard_size=...) writes NAME.weights.json + NAME_00000.weights.h5...
        for m in (f for f in kinds if f.name.endswith(".weights.json")):
            base = re.escape(m.name[: -len(".weights.json")])
            shards = [f for f in files if re.fullmatch(base + r"_\d{5}\.weights\.h5", f.name)]
            files = [f for f in files if f not in shards]
            warnings.append(summarize_ignored(shards, f"shards of {m.name}: sharded Keras "
                                              f"saves are not read") or f"ignored {m.name}")
        # CSVLogger's log beside the checkpoints, or one level up (``run/checkpoints/``)
        up = visible_files(folder.parent) if folder != path or folder.name in (
            "checkpoints", "ckpt", "ckpts", "weights") else []
        metrics, used, w = keras_metrics(list(kinds) + up)
        warnings += w
        if used:
            spec["metrics_files"] = [str(f) for f in used]
        stray = [f for f, k in kinds.items() if k != "keras" and f not in used
                 and not f.name.endswith(".weights.json") and not is_non_weight_file(f)]
        line = summarize_ignored(stray, "not Keras checkpoints")
        if line:
            warnings.append(line)
    entries, layers, w = scan_keras_files(files)
    warnings += w
    if layers:
        spec["keras_layer_names"] = layers
    if not entries:  # raises, repeating why the files were skipped
        return assemble_or_explain(path, "keras", entries, KerasReader(), metrics, spec, warnings)
    buffers = sorted({n for _, info in entries for n in info
                      if n.rsplit(".", 1)[-1] in BUFFER_VARS})
    run = assemble_run(path, "keras", entries, KerasReader(), metrics, spec, warnings,
                       buffer_names=buffers)
    attach_from_snapshots(run)
    return run
