"""The xarrays of the model (lib/xarray.c): index -> object maps, in insertion order.

The kernel keeps its memory block devices in an xarray (``memory_blocks``,
drivers/base/memory.c: xa_store() in __add_memory_block(), xa_load() in
find_memory_block_by_id(), xa_erase() in remove_memory_block()).  A machine with
131,072 boot blocks would spend most of its boot building block objects nobody
looks at, so :class:`XArray` can hold entries *to be created*: their indexes are
stored at once (:meth:`XArray.store_lazy`) and each object is made by a factory
on first load.  Apart from when an object is built, nothing differs from a dict:
the same indexes, the same iteration order, the same objects once built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Generic, TypeVar, overload

T = TypeVar("T")
D = TypeVar("D")


class XArray(MutableMapping[int, T], Generic[T]):
    """An index -> object map whose entries may be built on first access."""

    __slots__ = ("_d", "_make")

    def __init__(self) -> None:
        #: Index -> object, or None for an entry still to be built by ``_make``.
        self._d: dict[int, T | None] = {}
        self._make: Callable[[int], T] | None = None

    def store_lazy(self, indexes: Iterable[int], make: Callable[[int], T]) -> None:
        """xa_store() of each index (appended in order), the object built by
        ``make(index)`` on first load.  One factory per array."""
        if self._make is not None:
            raise ValueError("an XArray has one factory")
        self._make = make
        self._d.update(dict.fromkeys(indexes))

    def _build(self, index: int) -> T:
        assert self._make is not None
        obj = self._d[index] = self._make(index)  # the entry keeps its place
        return obj

    def __getitem__(self, index: int) -> T:
        obj = self._d[index]
        return self._build(index) if obj is None else obj

    @overload
    def get(self, index: int, /) -> T | None: ...
    @overload
    def get(self, index: int, default: T | D, /) -> T | D: ...
    def get(self, index: int, default: object = None) -> object:
        """xa_load()."""
        if index not in self._d:
            return default
        obj = self._d[index]
        return self._build(index) if obj is None else obj

    def __contains__(self, index: object) -> bool:
        return index in self._d

    def __setitem__(self, index: int, obj: T) -> None:
        self._d[index] = obj

    def __delitem__(self, index: int) -> None:
        del self._d[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def raw_items(self) -> Iterable[tuple[int, T | None]]:
        """(index, object), None for an entry not built yet: a walk that builds nothing."""
        return self._d.items()

    def built(self) -> int:
        """How many entries exist as objects (for tests and benchmarks)."""
        return sum(v is not None for v in self._d.values())
