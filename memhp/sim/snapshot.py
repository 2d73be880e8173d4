"""Copies of a simulated machine as bytes (pickle), e.g. a study's booted template.

A copy made with :func:`dumps` and :func:`loads` is the same machine: the same
state, the same behaviour from there on (each object class says what it leaves out
and how it rebuilds it: ``__getstate__``/``__setstate__``).  One difference from a
plain ``pickle.loads``: objects come back with their attributes set one by one, as
their ``__init__`` sets them, not through their ``__dict__``.  CPython keeps the
attributes of such objects inline (a plain ``BUILD`` materialises the ``__dict__``
instead), and the model's hot paths read attributes of the allocator, its zones and
its allocations: after a plain unpickling a study run took ~10% longer.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import types
from typing import Any

#: copyreg.__newobj__ (pickle's NEWOBJ: cls.__new__(cls)); not in the type stubs.
_NEWOBJ: Any = copyreg.__newobj__  # type: ignore[attr-defined]
_OPAQUE = (type, types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType)


def _set_attrs(obj: object, state: dict[str, Any]) -> None:
    for k, v in state.items():
        object.__setattr__(obj, k, v)


class _Pickler(pickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        cls: Any = type(obj)
        if (
            isinstance(obj, _OPAQUE)
            or not hasattr(obj, "__dict__")
            or cls.__reduce_ex__ is not object.__reduce_ex__
            or cls.__reduce__ is not object.__reduce__
            or hasattr(cls, "__getnewargs_ex__")
            or hasattr(cls, "__getnewargs__")
            or hasattr(cls, "__slots__")
        ):
            return NotImplemented  # the usual reduction
        state = obj.__getstate__()
        if not isinstance(state, dict):
            return NotImplemented
        setter = getattr(cls, "__setstate__", None)
        if setter is None and cls.__setattr__ is object.__setattr__:
            # BUILD with (None, attributes): pickle sets them one by one, in C
            return _NEWOBJ, (cls,), (None, state)
        return _NEWOBJ, (cls,), state, None, None, setter or _set_attrs


class NotCopyable(Exception):
    """The machine holds something pickle cannot copy (e.g. a virtio-mem driver's
    callback): callers build their machine instead."""


def dumps(obj: object) -> bytes:
    """``obj`` (a :class:`~memhp.sim.machine.SimMachine`) as bytes for :func:`loads`;
    :class:`NotCopyable` when some object in it cannot be pickled."""
    buf = io.BytesIO()
    try:
        _Pickler(buf, pickle.HIGHEST_PROTOCOL).dump(obj)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise NotCopyable(str(e)) from None
    return buf.getvalue()


def loads(data: bytes) -> Any:
    """A new copy of the object :func:`dumps` saved."""
    return pickle.loads(data)
