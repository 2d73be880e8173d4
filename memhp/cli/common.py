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
    if getattr(args, "contrary", False):
        other = "--disable" if enable else "--enable"
        other_cmd = "memhp offline" if enable else "memhp online"
        print(f"{prog}: {other} contradicts this command; use {other_cmd}", file=sys.stderr)
        print(tryhelp(prog), file=sys.stderr)
        return 1
    if args.selection.startswith("-") and args.selection != "-":
        # argparse takes "-1" for an argument; getopt (chmem) for an option.
        print(f"{prog}: invalid option -- '{args.selection[1:2]}'", file=sys.stderr)
        print(tryhelp(prog), file=sys.stderr)
        return 1

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


# -- util-linux style for the argparse commands ------------------------------------


def _wrap(text: str, indent: str = "", width: int = 79) -> list[str]:
    import textwrap

    out: list[str] = []
    for para in text.split("\n"):
        out += textwrap.wrap(para, width, initial_indent=indent, subsequent_indent=indent) or [""]
    return out


def option_label(a: argparse.Action) -> str:
    """`` -z, --zone <zone>`` as util-linux help texts write an option."""
    shorts = [o for o in a.option_strings if not o.startswith("--")]
    longs = [o for o in a.option_strings if o.startswith("--")]
    label = ", ".join(shorts + longs)
    if not shorts:
        label = "    " + label
    if a.nargs != 0:
        mv = a.metavar if isinstance(a.metavar, str) else a.dest
        label += f" <{mv.lower()}>"
    return " " + label


def usage_line(p: argparse.ArgumentParser) -> str:
    parts = [p.prog, "[options]"]
    for a in p._actions:
        if a.option_strings:
            if a.required:
                parts.append(f"{a.option_strings[-1]} <{str(a.metavar or a.dest).lower()}>")
            continue
        if isinstance(a, argparse._SubParsersAction):
            parts.append(f"{a.metavar or 'COMMAND'} [ARGS]")
            continue
        mv = a.metavar if isinstance(a.metavar, str) else a.dest.upper()
        if a.nargs == "?":
            parts.append(f"[{mv}]")
        elif a.nargs in ("+", "*"):
            parts.append(f"{mv}...")
        else:
            parts.append(mv)
    return " " + " ".join(parts)


def help_sections(p: argparse.ArgumentParser) -> list[tuple[str, list[tuple[str, str]]]]:
    """(title, [(label, help)]) of a parser: its options, arguments and commands."""
    opts: list[tuple[str, str]] = []
    args: list[tuple[str, str]] = []
    cmds: list[tuple[str, str]] = []
    tail: list[tuple[str, str]] = []
    for a in p._actions:
        if a.help == argparse.SUPPRESS:
            continue
        if isinstance(a, argparse._SubParsersAction):
            cmds += [(" " + c.dest, c.help or "") for c in a._get_subactions()]
        elif isinstance(a, argparse._HelpAction):
            tail.append((option_label(a), "display this help"))
        elif isinstance(a, argparse._VersionAction):
            tail.append((option_label(a), "display version"))
        elif a.option_strings:
            text = a.help or ""
            if a.choices is not None and "{" not in text:
                text += f" ({', '.join(map(str, a.choices))})"
            opts.append((option_label(a), text % {"default": a.default} if "%(" in text else text))
        else:
            mv = a.metavar if isinstance(a.metavar, str) else a.dest.upper()
            args.append((" " + mv, a.help or ""))
    out: list[tuple[str, list[tuple[str, str]]]] = []
    if args and any(h for _, h in args):
        out.append(("Arguments", args))
    if opts or tail:
        out.append(("Options", opts + ([("", "")] if opts and tail else []) + tail))
    if cmds:
        out.append(("Commands", cmds))
    return out


class UtilParser(argparse.ArgumentParser):
    """argparse with util-linux's help layout and errors (one line, ``Try ... --help``, 1)."""

    def format_help(self) -> str:
        lines = ["", "Usage:", usage_line(self), ""]
        if self.description:
            lines += [*_wrap(self.description), ""]
        for title, rows in help_sections(self):
            width = max(len(label) for label, _ in rows) + 2
            width = max(width, 22)
            lines.append(f"{title}:")
            for label, text in rows:
                if not label and not text:
                    lines.append("")
                elif len(label) + 2 > width:
                    lines += [label, *_wrap(text, " " * width)]
                else:
                    wrapped = _wrap(text, " " * width)
                    lines.append(label.ljust(width) + wrapped[0].lstrip())
                    lines += wrapped[1:]
            lines.append("")
        if self.epilog:
            lines += [*_wrap(self.epilog), ""]
        return "\n".join(lines)

    def format_usage(self) -> str:
        return "Usage:\n" + usage_line(self) + "\n"

    def error(self, message: str) -> NoReturn:
        warnx(self.prog, message)
        print(tryhelp(self.prog), file=sys.stderr)
        raise SystemExit(1)
