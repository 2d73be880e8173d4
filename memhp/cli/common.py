"""Helpers shared by the memhp commands: GNU ``getopt_long`` and util-linux errors.

util-linux tools parse options with glibc's ``getopt_long`` (argument permutation,
unambiguous long-option prefixes, ``--opt=value``) and report problems with
``warnx``/``errtryhelp``.  :func:`getopt_long` reproduces that, messages included,
so that ``memhp list`` fails exactly like ``lsmem`` on a bad command line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from memhp.host.root import SysfsRoot

NO_ARG, REQUIRED_ARG, OPTIONAL_ARG = 0, 1, 2


class LongOpt:
    """A ``struct option``: name, NO_ARG/REQUIRED_ARG/OPTIONAL_ARG, value."""

    __slots__ = ("has_arg", "name", "val")

    def __init__(self, name: str, has_arg: int, val: str) -> None:
        self.name = name
        self.has_arg = has_arg
        self.val = val  # the short option it stands for, or an identifier


class GetoptError(Exception):
    """A command-line error, with glibc's message (without the program prefix)."""


def getopt_long(
    argv: Sequence[str], shortopts: str, longopts: Sequence[LongOpt], rest: list[str]
) -> Iterator[tuple[str, str | None]]:
    """Parse ``argv`` like glibc ``getopt_long`` with permutation.

    Yields the options in order as ``(val, arg)`` and appends the non-option
    arguments to ``rest``.  Raises :class:`GetoptError` when it reaches a bad
    option (options before it have been yielded, as with the C loop).
    """
    i = 0
    n = len(argv)
    while i < n:
        a = argv[i]
        i += 1
        if a == "--":
            rest.extend(argv[i:])
            break
        if a.startswith("--"):
            body = a[2:]
            name, eq, value = body.partition("=")
            exact = [lo for lo in longopts if lo.name == name]
            cands = exact or [lo for lo in longopts if lo.name.startswith(name)]
            if not cands:
                raise GetoptError(f"unrecognized option '--{name}'")
            if len(cands) > 1:
                first = cands[0]
                if any((c.has_arg, c.val) != (first.has_arg, first.val) for c in cands[1:]):
                    poss = " ".join(f"'--{c.name}'" for c in cands)
                    raise GetoptError(f"option '--{name}' is ambiguous; possibilities: {poss}")
            lo = cands[0]
            if lo.has_arg == NO_ARG:
                if eq:
                    raise GetoptError(f"option '--{lo.name}' doesn't allow an argument")
                yield ((lo.val, None))
            elif lo.has_arg == REQUIRED_ARG:
                if eq:
                    yield ((lo.val, value))
                elif i < n:
                    yield ((lo.val, argv[i]))
                    i += 1
                else:
                    raise GetoptError(f"option '--{lo.name}' requires an argument")
            else:
                yield ((lo.val, value if eq else None))
            continue
        if a.startswith("-") and a != "-":
            j = 1
            while j < len(a):
                c = a[j]
                j += 1
                pos = shortopts.find(c)
                if pos < 0 or c == ":":
                    raise GetoptError(f"invalid option -- '{c}'")
                takes = shortopts[pos + 1 : pos + 2] == ":"
                if not takes:
                    yield (c, None)
                    continue
                if j < len(a):
                    yield ((c, a[j:]))
                elif i < n:
                    yield ((c, argv[i]))
                    i += 1
                else:
                    raise GetoptError(f"option requires an argument -- '{c}'")
                break
            continue
        rest.append(a)


class Exclusive:
    """util-linux ``err_exclusive_options``: call :meth:`check` for each option."""

    def __init__(self, groups: Sequence[Sequence[str]], longopts: Sequence[LongOpt]) -> None:
        self.groups = groups
        self.longopts = longopts
        self.seen: list[str | None] = [None] * len(groups)

    def check(self, val: str) -> str | None:
        """The error message when ``val`` conflicts with an earlier option."""
        for gi, group in enumerate(self.groups):
            if val not in group:
                continue
            if self.seen[gi] is None:
                self.seen[gi] = val
            elif self.seen[gi] != val:
                names = []
                for g in group:
                    lo = next((x for x in self.longopts if x.val == g), None)
                    names.append(f"--{lo.name}" if lo else f"-{g}")
                return "mutually exclusive arguments: " + " ".join(names)
        return None


def warnx(prog: str, message: str) -> None:
    print(f"{prog}: {message}", file=sys.stderr)


def errx(prog: str, message: str, code: int = 1) -> NoReturn:
    warnx(prog, message)
    raise SystemExit(code)


def tryhelp(prog: str) -> str:
    return f"Try '{prog} --help' for more information."


# -- argparse-based commands (online, offline, devices, remove, why) ----------------


def add_root_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-s",
        "--sysroot",
        metavar="DIR",
        help="use the specified directory as system root (default /)",
    )


def open_root(args: argparse.Namespace) -> SysfsRoot:
    """The root the command works on: ``args.root`` (in-process) or ``--sysroot``.

    Raises :class:`~memhp.host.errors.UsageError` when the directory does not exist.
    """
    import os

    from memhp.host.errors import UsageError
    from memhp.host.root import SysfsRoot

    root = getattr(args, "root", None)
    if isinstance(root, SysfsRoot):
        return root
    sysroot = getattr(args, "sysroot", None)
    if sysroot:
        try:
            st = os.stat(sysroot)
        except OSError as e:
            raise UsageError(f"{sysroot}: {e.strerror}") from None
        import stat as stat_mod

        if not stat_mod.S_ISDIR(st.st_mode):
            raise UsageError(f"{sysroot}: not a directory")
    return SysfsRoot.open(sysroot)


def guarded(prog: str, fn: Callable[[], int]) -> int:
    """Run ``fn``; bad input and sysfs errors become one line on stderr and exit 1."""
    from memhp.host.errors import HostError

    try:
        return fn()
    except HostError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1


def run_change(args: argparse.Namespace, enable: bool) -> int:
    from memhp.host.chmem import change

    prog = "memhp online" if enable else "memhp offline"

    def go() -> int:
        root = open_root(args)
        res = change(
            root,
            args.selection,
            enable=enable,
            use_blocks=args.blocks,
            zone=args.zone,
            verbose=args.verbose,
        )
        for w in res.warnings:
            print(f"{prog}: {w}", file=sys.stderr)
        for m in res.messages:
            print(m)
        return res.code

    return guarded(prog, go)
