"""The one size grammar (memhp.abi.units) and its formatters."""

from __future__ import annotations

import pytest

from memhp.abi.units import human_size, parse_size, size_to_human_string


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("4096", 4096),
        ("0x8000000", 128 << 20),
        ("128M", 128 << 20),
        ("128m", 128 << 20),
        (" 2 G ", 2 << 30),
        ("1GiB", 1 << 30),
        ("1Gib", 1 << 30),
        ("1GB", 10**9),
        ("1kb", 1000),
        ("3T", 3 << 40),
        ("1P", 1 << 50),
        ("2E", 2 << 60),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "x", "1Q", "1.5G", "-1G", "1 GiBB", "G"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


def test_default_unit() -> None:
    assert parse_size("512", default_unit=1 << 20) == 512 << 20
    assert parse_size("512K", default_unit=1 << 20) == 512 << 10


def test_size_to_human_string() -> None:
    assert size_to_human_string(0) == "0B"
    assert size_to_human_string(1536 << 20) == "1.5G"
    assert size_to_human_string(2 << 60) == "2E"


def test_human_size() -> None:
    assert human_size(0) == "0"
    assert human_size(640 << 10) == "640K"
    assert human_size(1536 << 20) == "1.5G"
    assert human_size(16 << 40) == "16T"
    assert human_size(100) == "100B"
