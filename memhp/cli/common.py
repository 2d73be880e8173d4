"""Helpers shared by the memhp commands: util-linux style for argparse commands.

GNU ``getopt_long`` and util-linux's one-line errors live in
:mod:`memhp.cli.getoptlong` (re-exported here).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn

from memhp.cli.getoptlong import (
    NO_ARG as NO_ARG,
)
from memhp.cli.getoptlong import (
    OPTIONAL_ARG as OPTIONAL_ARG,
)
from memhp.cli.getoptlong import (
    REQUIRED_ARG as REQUIRED_ARG,
)
from memhp.cli.getoptlong import (
    Exclusive as Exclusive,
)
from memhp.cli.getoptlong import (
    GetoptError as GetoptError,
)
from memhp.cli.getoptlong import (
    LongOpt as LongOpt,
)
from memhp.cli.getoptlong import (
    errx as errx,
)
from memhp.cli.getoptlong import (
    getopt_long as getopt_long,
)
from memhp.cli.getoptlong import (
    tryhelp as tryhelp,
)
from memhp.cli.getoptlong import (
    warnx as warnx,
)

if TYPE_CHECKING:
    from memhp.host.root import SysfsRoot

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
