"""A snapshot's weights copied for the Recorder's writer process: one copy into one new
buffer through numpy views kept between snapshots (:class:`Plan`), or tensor by tensor
where numpy cannot view them (:func:`copies`: GPU tensors, bfloat16, numpy arrays)."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from lossview.core.errors import LossviewError

#: numpy dtype (``dtype.str``) -> safetensors dtype
_DTYPES = {"<f4": "F32", "<f8": "F64", "<f2": "F16", "<i8": "I64", "<i4": "I32", "<i2": "I16",
           "|i1": "I8", "|u1": "U8", "<u2": "U16", "<u4": "U32", "<u8": "U64", "|b1": "BOOL"}


class Plan:
    """How to copy a snapshot whose tensors are CPU tensors numpy can view: byte views of
    their memory, in the order of their names, concatenated into one new buffer (one
    allocation and one copy: :meth:`copy`). Valid while the same tensors keep the same memory, shape,
    strides and dtype (``p.data = ...`` or ``model.double()`` make a new plan)."""

    def __init__(self, tensors: Mapping[str, Any]) -> None:
        self.source = tensors
        self.keys = tuple(tensors)
        self.tensors = tuple(tensors.values())
        self.state = self._state(self.tensors)
        self.names, self.views, self.nbytes = [], [], 0
        for k in sorted(self.keys):
            a = tensors[k].detach().numpy()  # shares the tensor's memory
            code = _DTYPES.get(a.dtype.str)
            if code is None or not a.flags.c_contiguous:
                raise TypeError(f"{k}: no plain view")
            self.names.append((k, code, a.shape, a.nbytes))
            self.views.append(memoryview(a.reshape(-1).view("u1")))
            self.nbytes += a.nbytes

    @classmethod
    def of(cls, tensors: Mapping[str, Any]) -> Plan | None:
        import torch

        if not all(isinstance(t, torch.Tensor) and t.device.type == "cpu"
                   and t.layout is torch.strided and t.is_contiguous() for t in tensors.values()):
            return None
        try:
            return cls(tensors)
        except (TypeError, RuntimeError):  # bfloat16, a conjugate view...: copied one by one
            return None

    @staticmethod
    def _state(tensors: tuple) -> list:
        return [(t.data_ptr(), t.shape, t.stride(), t.dtype) for t in tensors]

    def fits(self, tensors: Mapping[str, Any]) -> bool:
        """Whether ``tensors`` are the planned ones, unchanged (the same dict object is
        taken to hold the same entries)."""
        if tensors is self.source:
            return self._state(self.tensors) == self.state
        return (len(tensors) == len(self.keys)
                and all(a is b for a, b in zip(tensors.values(), self.tensors))
                and tuple(tensors) == self.keys and self._state(self.tensors) == self.state)

    def copy(self) -> bytes:
        """The tensors' bytes now, in one new buffer (``bytes.join``: one C call, a third
        of ``np.concatenate``'s time between training steps)."""
        return b"".join(self.views)


def copies(tensors: Mapping[str, Any]) -> tuple[list, list, int]:
    """A snapshot copied tensor by tensor (GPU tensors, bfloat16 widened to float32, numpy
    arrays): names with dtype, shape and size, the copies' buffers, their bytes."""
    from lossview.core.train.sinks import _copy

    names, data, n = [], [], 0
    for k, a in sorted(_copy(tensors).items()):
        if not a.flags.c_contiguous:  # a transposed view's copy keeps its layout
            a = a.copy(order="C")
        code = _DTYPES.get(a.dtype.str)
        if code is None:
            a = a.astype(a.dtype.newbyteorder("<"))
            code = _DTYPES.get(a.dtype.str)
            if code is None:
                raise LossviewError(f"cannot store {k} of dtype {a.dtype} in a snapshot")
        names.append((k, code, a.shape, a.nbytes))
        data.append(pickle.PickleBuffer(a))
        n += a.nbytes
    return names, data, n
