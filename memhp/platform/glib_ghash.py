"""GLib 2.74's GHashTable (glib/ghash.c) as far as the order of its keys goes.

QEMU keeps an object's properties, its children among them, in a GHashTable
keyed by name (object_initialize_with_type(): ``g_hash_table_new_full(g_str_hash,
g_str_equal, ...)``), and walks it with g_hash_table_iter_next() wherever it lists
children: object_child_foreach() for ``query-memdev`` (the backends under
``/objects``), object_resolve_partial_path() for a partial QOM path.  That order is
the table's bucket order, which follows from the keys, the table's size and the
history of inserts and removals.  This module keeps only what decides it: the
bucket array of hashes and keys, the tombstones, and the resizes.

- g_str_hash(): djb2 over the signed bytes (h = h * 33 + c, from 5381), 32 bits;
  0 and 1 (the unused and tombstone markers) become 2 (HASH_IS_REAL()).
- g_hash_table_hash_to_index(): ``(hash * 11) % mod`` with ``mod`` the prime below
  the size (``prime_mod[]``); probing adds 1, 2, 3... modulo the size
  (g_hash_table_lookup_node(), which also reuses the first tombstone it met).
- g_hash_table_insert_node(): a key put into an unused bucket (not a tombstone)
  counts as occupied and may resize; g_hash_table_remove_node() leaves a
  tombstone and may resize (g_hash_table_maybe_resize(): size above 4 x nodes and
  above 8, or occupied + occupied/16 at or above the size).
- g_hash_table_resize(): the new size is the power of two above nodes x 1.333
  (at least 8); entries are moved in bucket order into their new home, evicting
  and re-placing what sits there (resize_map()), tombstones are dropped.

Pure model: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator

#: HASH_TABLE_MIN_SHIFT: 8 buckets at least.
MIN_SHIFT = 3
#: prime_mod[]: the largest prime below each power of two (shift 0..31).
PRIME_MOD = (
    1, 2, 3, 7, 13, 31, 61, 127, 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521,
    131071, 262139, 524287, 1048573, 2097143, 4194301, 8388593, 16777213, 33554393,
    67108859, 134217689, 268435399, 536870909, 1073741789, 2147483647,
)  # fmt: skip
UNUSED, TOMBSTONE = 0, 1
_MASK32 = 0xFFFFFFFF


def g_str_hash(key: str) -> int:
    """g_str_hash(): djb2 over the key's bytes as signed chars, 32 bits."""
    h = 5381
    for b in key.encode():
        h = (h * 33 + (b - 256 if b > 127 else b)) & _MASK32
    return h


def _closest_shift(n: int) -> int:
    """g_hash_table_find_closest_shift(): the number of bits of ``n``."""
    return max(n.bit_length(), MIN_SHIFT)


class GHashTable:
    """A string-keyed GHashTable: insert, remove, and its iteration order."""

    def __init__(self) -> None:
        self._set_shift(MIN_SHIFT)
        self.hashes = [UNUSED] * self.size
        self.keys: list[str | None] = [None] * self.size
        self.nnodes = 0
        self.noccupied = 0

    def _set_shift(self, shift: int) -> None:
        self.size = 1 << shift
        self.mod = PRIME_MOD[shift]
        self.mask = self.size - 1

    def _index(self, h: int) -> int:
        return ((h * 11) & _MASK32) % self.mod

    def _lookup(self, key: str) -> tuple[int, int]:
        """g_hash_table_lookup_node(): (bucket, hash) of the key or of where it goes."""
        h = g_str_hash(key)
        if h < 2:
            h = 2
        i = self._index(h)
        tomb = -1
        step = 0
        while self.hashes[i] != UNUSED:
            if self.hashes[i] == h and self.keys[i] == key:
                return i, h
            if self.hashes[i] == TOMBSTONE and tomb < 0:
                tomb = i
            step += 1
            i = (i + step) & self.mask
        return (tomb if tomb >= 0 else i), h

    def __contains__(self, key: str) -> bool:
        i, _ = self._lookup(key)
        return self.hashes[i] > TOMBSTONE

    def insert(self, key: str) -> None:
        """g_hash_table_insert() of a new key (an existing one keeps its bucket)."""
        i, h = self._lookup(key)
        old = self.hashes[i]
        if old > TOMBSTONE:
            return
        self.hashes[i] = h
        self.keys[i] = key
        self.nnodes += 1
        if old == UNUSED:
            self.noccupied += 1
            self._maybe_resize()

    def remove(self, key: str) -> bool:
        """g_hash_table_remove(): a tombstone in its bucket; False if absent."""
        i, _ = self._lookup(key)
        if self.hashes[i] <= TOMBSTONE:
            return False
        self.hashes[i] = TOMBSTONE
        self.keys[i] = None
        self.nnodes -= 1
        self._maybe_resize()
        return True

    def _maybe_resize(self) -> None:
        size, occ = self.size, self.noccupied
        if (size > self.nnodes * 4 and size > 1 << MIN_SHIFT) or size <= occ + occ // 16:
            self._resize()

    def _resize(self) -> None:
        """g_hash_table_resize() with resize_map()'s in-place eviction."""
        old_size = self.size
        self._set_shift(_closest_shift(int(self.nnodes * 1.333)))
        if self.size > old_size:
            self.hashes += [UNUSED] * (self.size - old_size)
            self.keys += [None] * (self.size - old_size)
        moved = [False] * max(self.size, old_size)
        for i in range(old_size):
            h = self.hashes[i]
            if h <= TOMBSTONE:
                self.hashes[i] = UNUSED
                continue
            if moved[i]:
                continue
            self.hashes[i] = UNUSED
            key = self.keys[i]
            self.keys[i] = None
            while True:
                j = self._index(h)
                step = 0
                while moved[j]:
                    step += 1
                    j = (j + step) & self.mask
                moved[j] = True
                replaced = self.hashes[j]
                self.hashes[j] = h
                if replaced <= TOMBSTONE:
                    self.keys[j] = key
                    break
                h = replaced
                key, self.keys[j] = self.keys[j], key
        if self.size < old_size:
            del self.hashes[self.size :]
            del self.keys[self.size :]
        self.noccupied = self.nnodes

    def __iter__(self) -> Iterator[str]:
        """g_hash_table_iter_next(): the keys in bucket order."""
        for h, k in zip(self.hashes, self.keys, strict=True):
            if h > TOMBSTONE and k is not None:
                yield k

    def __len__(self) -> int:
        return self.nnodes


__all__ = ["GHashTable", "g_str_hash"]
