"""Generate ``memhp.1`` from the command-line parser.

    python -m memhp.cli.manpage            # print the man page
    python -m memhp.cli.manpage -o FILE    # write it (memhp/memhp.1 is shipped)

The page is made of the same descriptions, options and arguments that ``--help``
prints, so it cannot drift from the parser; tests/cli checks the shipped copy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memhp import __version__
from memhp.cli.common import help_sections, usage_line

SHIPPED = Path(__file__).resolve().parents[1] / "memhp.1"


def _esc(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln if ln.startswith((".", "'")) else ln) for ln in text.split("\n"))


def _section(p: argparse.ArgumentParser, out: list[str], level: str) -> None:
    out.append(f".{level} {_esc(p.prog.removeprefix('memhp ').upper())}")
    out += [".nf", _esc(usage_line(p).strip()), ".fi"]
    if p.description:
        out += [".PP", _esc(p.description)]
    for title, rows in help_sections(p):
        if title == "Commands":
            continue
        out.append(f".PP\n{title}:")
        for label, text in rows:
            if label or text:
                out += [".TP", f"\\fB{_esc(label.strip())}\\fR", _esc(text)]
    if p.epilog:
        out += [".PP", _esc(p.epilog)]


def render() -> str:
    from memhp.cli.cmd_list import usage as list_usage
    from memhp.cli.main import build_parser

    parser = build_parser()
    out = [
        f'.TH MEMHP 1 "" "memhp {__version__}" "User Commands"',
        ".SH NAME",
        "memhp \\- Linux memory hot\\-(un)plug: list, online, offline, remove, diagnose",
        ".SH SYNOPSIS",
        ".nf",
        _esc(usage_line(parser).strip()),
        ".fi",
        ".SH DESCRIPTION",
        _esc(parser.description or ""),
        ".SH COMMANDS",
    ]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        if name == "list":
            out += [".SS LIST", ".nf", _esc(list_usage().strip("\n")), ".fi"]
            continue
        _section(p, out, "SS")
        inner = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        for a in inner:
            for q in a.choices.values():
                _section(q, out, "SS")
    out += [
        ".SH EXIT STATUS",
        "0 success, 1 failure or bad usage, 64 partly done (online, offline, remove).",
        ".SH SEE ALSO",
        "lsmem(1), chmem(8)",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m memhp.cli.manpage")
    ap.add_argument("-o", "--output", metavar="FILE", help="write the page to FILE")
    args = ap.parse_args(argv)
    text = render()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
