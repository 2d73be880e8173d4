"""GNU ``getopt_long`` and util-linux's one-line errors, for the memhp commands.

util-linux tools parse options with glibc's ``getopt_long`` (argument permutation,
unambiguous long-option prefixes, ``--opt=value``) and report problems with
``warnx``/``errtryhelp``.  :func:`getopt_long` reproduces that, messages included,
so that ``memhp list`` fails exactly like ``lsmem`` on a bad command line.

Kept apart from :mod:`memhp.cli.common` (argparse) so that ``memhp list`` starts
without importing argparse or typing.
"""

from __future__ import annotations

import sys

# Not typing.TYPE_CHECKING: ``memhp list`` starts without importing typing or collections.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

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
                raise GetoptError(f"unrecognized option '{a}'")
            if len(cands) > 1:
                first = cands[0]
                if any((c.has_arg, c.val) != (first.has_arg, first.val) for c in cands[1:]):
                    poss = " ".join(f"'--{c.name}'" for c in cands)
                    raise GetoptError(f"option '{a}' is ambiguous; possibilities: {poss}")
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
