"""``memhp list``: util-linux ``lsmem`` (2.38), byte for byte, on any sysfs root.

Options, their order-dependent interplay, error messages and exit codes follow
``sys-utils/lsmem.c``; extra columns (CONFIGURED, MEMMAP-ON-MEMORY, DEVICE) are
only shown when asked for with ``-o``.
"""

from __future__ import annotations

import sys

from memhp.cli.getoptlong import (
    NO_ARG,
    OPTIONAL_ARG,
    REQUIRED_ARG,
    Exclusive,
    GetoptError,
    LongOpt,
    getopt_long,
    tryhelp,
)

# Not typing.TYPE_CHECKING: ``memhp list`` starts without importing typing or argparse.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from memhp.host.root import SysfsRoot

PROG = "memhp list"
SHORTOPTS = "abhJno:PrS:s:V"
LONGOPTS = (
    LongOpt("all", NO_ARG, "a"),
    LongOpt("bytes", NO_ARG, "b"),
    LongOpt("help", NO_ARG, "h"),
    LongOpt("json", NO_ARG, "J"),
    LongOpt("noheadings", NO_ARG, "n"),
    LongOpt("output", REQUIRED_ARG, "o"),
    LongOpt("output-all", NO_ARG, "output-all"),
    LongOpt("pairs", NO_ARG, "P"),
    LongOpt("raw", NO_ARG, "r"),
    LongOpt("sysroot", REQUIRED_ARG, "s"),
    LongOpt("split", REQUIRED_ARG, "S"),
    LongOpt("version", NO_ARG, "V"),
    LongOpt("summary", OPTIONAL_ARG, "summary"),
)
EXCLUSIVE = (("J", "P", "r"), ("S", "a"))


def usage() -> str:
    from memhp.host.lsmem import COLUMNS

    lines = [
        "",
        "Usage:",
        f" {PROG} [options]",
        "",
        "List the ranges of available memory with their online status.",
        "",
        "Options:",
        " -J, --json           use JSON output format",
        ' -P, --pairs          use key="value" output format',
        " -a, --all            list each individual memory block",
        " -b, --bytes          print SIZE in bytes rather than in human readable format",
        " -n, --noheadings     don't print headings",
        " -o, --output <list>  output columns",
        "     --output-all     output all columns",
        " -r, --raw            use raw output format",
        " -S, --split <list>   split ranges by specified columns",
        " -s, --sysroot <dir>  use the specified directory as system root",
        "     --summary[=when] print summary information (never,always or only)",
        "",
        " -h, --help           display this help",
        " -V, --version        display version",
        "",
        "Available output columns:",
    ]
    lines += [f" {c.name:>10}  {c.help}" for c in COLUMNS]
    lines += ["", "Compatible with lsmem(1) from util-linux 2.38."]
    return "\n".join(lines) + "\n"


def run(argv: list[str], root: SysfsRoot | None = None) -> int:
    """``lsmem`` with ``argv``; returns the exit code (output on stdout/stderr).

    ``root`` is an in-process root (a simulated machine) used unless --sysroot is given.
    """
    from memhp.host.lsmem import (
        ALL_COLUMNS,
        DEFAULT_COLUMNS,
        MAX_COLUMNS,
        Lsmem,
        LsmemError,
        Options,
        string_add_to_idarray,
    )
    from memhp.host.root import SysfsRoot as _Root

    opts = Options()
    columns: list[int] = []
    outarg: str | None = None
    splitarg: str | None = None
    prefix: str | None = None
    excl = Exclusive(EXCLUSIVE, LONGOPTS)
    rest: list[str] = []
    err = sys.stderr
    try:
        for val, arg in getopt_long(argv, SHORTOPTS, LONGOPTS, rest):
            msg = excl.check(val)
            if msg:
                print(f"{PROG}: {msg}", file=err)
                return 1
            if val == "a":
                opts.list_all = True
            elif val == "b":
                opts.bytes = True
            elif val == "h":
                sys.stdout.write(usage())
                return 0
            elif val == "J":
                opts.fmt = "json"
                opts.want_summary = False
            elif val == "n":
                opts.noheadings = True
            elif val == "o":
                outarg = arg
            elif val == "output-all":
                columns = list(ALL_COLUMNS)
            elif val == "P":
                opts.fmt = "export"
                opts.want_summary = False
            elif val == "r":
                opts.fmt = "raw"
                opts.want_summary = False
            elif val == "s":
                prefix = arg
            elif val == "S":
                splitarg = arg
            elif val == "V":
                sys.stdout.write("memhp list, compatible with lsmem from util-linux 2.38.1\n")
                return 0
            elif val == "summary":
                if arg is None:
                    opts.want_table = False
                elif arg == "never":
                    opts.want_summary = False
                elif arg == "only":
                    opts.want_table = False
                elif arg == "always":
                    opts.want_summary = True
                else:
                    print(f"{PROG}: unsupported --summary argument", file=err)
                    return 1
    except GetoptError as e:
        print(f"{PROG}: {e}\n{tryhelp(PROG)}", file=err)
        return 1
    if rest:
        print(f"{PROG}: bad usage\n{tryhelp(PROG)}", file=err)
        return 1
    if not opts.want_table and not opts.want_summary:
        print(
            f"{PROG}: options --{{raw,json,pairs}} and --summary=only are mutually exclusive",
            file=err,
        )
        return 1
    if root is None or prefix:
        root = _Root.open(prefix)
    try:
        if opts.want_table:
            if not columns:
                columns = list(DEFAULT_COLUMNS)
            if outarg is not None:
                columns = string_add_to_idarray(outarg, columns, MAX_COLUMNS)
            opts.columns = columns
            if splitarg is not None:
                opts.split = (
                    []
                    if splitarg.lower() == "none"
                    else string_add_to_idarray(splitarg, [], len(ALL_COLUMNS) + 3)
                )
        out = Lsmem(root, opts).run()
    except LsmemError as e:
        if e.message:
            print(f"{PROG}: {e.message}", file=err)
        return e.code
    sys.stdout.write(out)
    return 0


def _func(args: argparse.Namespace) -> int:
    argv: list[str] = list(args.argv)
    return run(argv, getattr(args, "root", None))


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    import argparse

    p = subparsers.add_parser(
        "list",
        help="list memory blocks (lsmem-compatible)",
        add_help=False,
        prefix_chars="\x00",
    )
    p.add_argument("argv", nargs=argparse.REMAINDER)
    p.set_defaults(func=_func)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
