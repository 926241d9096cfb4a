"""A model's snapshot tensors for the Recorder (trainable parameters and buffers by name),
read once and re-checked cheaply at each snapshot instead of walked by name every time."""

from __future__ import annotations

from typing import Any


class ModelTensors:
    """``{name: parameter}`` of a model's trainable parameters and ``{name: buffer}``, as
    ``named_parameters``/``named_buffers`` give them, returned as the same two dict
    objects from one :meth:`get` to the next while the model is unchanged.

    They are read again when a module's parameter, buffer or submodule is added, removed
    or replaced (``model.fc = nn.Linear(...)``, ``register_buffer``, ``del``...) or a
    parameter's ``requires_grad`` changes: checked by the identity and number of the
    entries of every module's ``_parameters``, ``_buffers`` and ``_modules`` (a few
    microseconds; walking the model by name cost the training thread 10-40). A tensor
    whose memory changes in place (``p.data = ...``) is the same object: the snapshot's
    copy plan checks that (``snapshot_copy.Plan``).

    A model whose class defines its own ``named_parameters`` or ``named_buffers`` is
    asked every time.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        # a model class that lists its tensors its own way is asked every time
        cls = type(model)
        self._cached = all(getattr(cls, f, None) is getattr(_module(), f)
                           for f in ("named_parameters", "named_buffers"))
        self.params: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self._dicts: tuple = ()
        self._items: tuple = ()
        self._grads: tuple = ()

    def get(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The trainable parameters and the buffers, by name."""
        if not self._dicts or not self._cached or not self._same():
            self._read()
        return self.params, self.buffers

    def _read(self) -> None:
        model = self.model
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.buffers = dict(model.named_buffers())
        dicts, items = [], []
        for _, mod in model.named_modules(remove_duplicate=False):
            owned = (mod._parameters, mod._buffers, mod._modules)
            dicts.append((mod, *owned, *map(len, owned)))
            for d in owned:
                items.extend((d, k, v) for k, v in d.items())
        self._dicts, self._items = tuple(dicts), tuple(items)
        self._grads = tuple((p, p.requires_grad) for _, p in model.named_parameters())

    def _same(self) -> bool:
        for mod, pd, bd, md, np_, nb, nm in self._dicts:
            if (mod._parameters is not pd or mod._buffers is not bd or mod._modules is not md
                    or len(pd) != np_ or len(bd) != nb or len(md) != nm):
                return False
        for d, k, v in self._items:
            if d.get(k) is not v:
                return False
        return all(p.requires_grad is g for p, g in self._grads)


def _module() -> Any:
    from torch.nn import Module

    return Module
