"""The GHashTable model against GLib itself: the same inserts and removals give the
same iteration order as libglib-2.0 (ctypes), whose table QEMU's /objects is."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memhp.platform.glib_ghash import GHashTable, g_str_hash

_NAME = ctypes.util.find_library("glib-2.0")


def _glib() -> Any:
    if _NAME is None:
        pytest.skip("libglib-2.0 is not installed")
    g = ctypes.CDLL(_NAME)
    g.g_hash_table_new.restype = ctypes.c_void_p
    g.g_hash_table_new.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    g.g_hash_table_insert.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    g.g_hash_table_remove.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    g.g_hash_table_destroy.argtypes = [ctypes.c_void_p]
    g.g_hash_table_iter_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    g.g_hash_table_iter_next.argtypes = [
        ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_char_p),
        ctypes.c_void_p,
    ]
    g.g_str_hash.restype = ctypes.c_uint
    g.g_str_hash.argtypes = [ctypes.c_char_p]
    return g


def _glib_order(g: Any, ops: list[tuple[bool, str]]) -> list[str]:
    """Run the operations on a real g_str_hash table; its keys in iteration order."""
    table = g.g_hash_table_new(
        ctypes.cast(g.g_str_hash, ctypes.c_void_p), ctypes.cast(g.g_str_equal, ctypes.c_void_p)
    )
    keep = []
    try:
        for insert, key in ops:
            buf = ctypes.create_string_buffer(key.encode())
            keep.append(buf)
            if insert:
                g.g_hash_table_insert(table, buf, None)
            else:
                g.g_hash_table_remove(table, key.encode())
        it = (ctypes.c_void_p * 8)()  # GHashTableIter: 6 pointer-sized fields
        g.g_hash_table_iter_init(it, table)
        out, key_p = [], ctypes.c_char_p()
        while g.g_hash_table_iter_next(it, ctypes.byref(key_p), None):
            assert key_p.value is not None
            out.append(key_p.value.decode())
        return out
    finally:
        g.g_hash_table_destroy(table)


_KEYS = st.builds(
    lambda p, n: f"{p}{n}",
    st.sampled_from(["m", "mem-", "vm", "dimm", "z", "é"]),
    st.integers(0, 60),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _KEYS), max_size=120))
def test_order_matches_glib(ops: list[tuple[bool, str]]) -> None:
    g = _glib()
    t = GHashTable()
    for insert, key in ops:
        if insert:
            t.insert(key)
        else:
            t.remove(key)
    assert list(t) == _glib_order(g, ops)
    assert len(t) == len(set(list(t)))


def test_many_keys_grow_and_shrink() -> None:
    g = _glib()
    ops = [(True, f"mem-dimm{i}") for i in range(300)]
    ops += [(False, f"mem-dimm{i}") for i in range(0, 300, 3)]
    ops += [(True, f"m{i}") for i in range(40)]
    ops += [(False, f"mem-dimm{i}") for i in range(1, 300, 3)]
    ops += [(False, f"mem-dimm{i}") for i in range(2, 300, 3)]
    t = GHashTable()
    for insert, key in ops:
        t.insert(key) if insert else t.remove(key)
    assert list(t) == _glib_order(g, ops)
    assert t.size < 512  # shrunk again after the removals


def test_str_hash_is_glibs() -> None:
    g = _glib()
    for key in ("", "m0", "mem-vm0", "é", "x" * 100):
        assert g_str_hash(key) == g.g_str_hash(key.encode())
