"""The ``memhp`` command: one sub-command per module ``memhp.cli.cmd_<name>``.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: Command modules, in the order ``memhp --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "list",
    "online",
    "offline",
    "devices",
    "remove",
    "why",
    "map",
    "sim",
    "pgtables",
    "bench",
    "demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memhp",
        description="Linux physical memory hot-(un)plug: list, online, offline, remove, "
        "diagnose, and a simulated kernel to try it on.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"memhp.cli.cmd_{name}")
        except ModuleNotFoundError as e:
            if e.name != f"memhp.cli.cmd_{name}":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc: int = args.func(args)
    except KeyboardInterrupt:
        print("memhp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
