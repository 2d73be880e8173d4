"""The ``memhp`` command: one sub-command per module ``memhp.cli.cmd_<name>``.

Each command module exposes ``register(subparsers)`` which adds its parser and sets
``func`` (a callable taking the parsed namespace and returning the exit code).
Only the module of the command being run is imported, so that ``memhp list``
starts as fast as util-linux's lsmem (the simulated kernel and numpy are not
loaded for it).  Command modules import what an install extra provides (numpy,
matplotlib, qemu.qmp) only when they run: ``pip install memhp`` is the
tool, and a command whose extra is missing says which one in one line.
"""

from __future__ import annotations

import sys

# Not typing.TYPE_CHECKING, and the heavier imports inside the functions: ``memhp
# list`` runs without importing argparse, typing or importlib.util (see main()).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

    from memhp.abi.fs import SysfsFS

#: Command modules and their one-line help, in the order ``memhp --help`` lists them.
COMMANDS: dict[str, str] = {
    "list": "list memory blocks (util-linux lsmem compatible)",
    "online": "online memory blocks (util-linux chmem -e compatible)",
    "offline": "offline memory blocks (util-linux chmem -d compatible)",
    "devices": "list memory devices (ACPI PNP0C80 DIMMs, virtio-mem)",
    "remove": "hot-remove a memory device: offline its blocks reliably, then eject",
    "restore": "online again the blocks an interrupted remove left offline",
    "why": "explain why a memory block cannot be offlined or removed",
    "map": "draw the physical memory map of a sysfs root",
    "sim": "run a simulated machine: sysfs mounted with FUSE, hardware over QMP",
    "vm": "the hypervisor's side: resize a virtio-mem device over QMP",
    "pgtables": "show the kernel page tables of a simulated machine",
    "bench": "real Linux under QEMU against the simulated kernel",
    "demo": "run the seed's hot-remove scenario on a simulated machine",
    "study": "capacity study: how much hot-added memory comes out, how often, how fast",
}

#: The install extra (``pip install 'memhp[<extra>]'``) each command needs beyond
#: the tool; list, online, offline, devices, remove and why need none.
COMMAND_EXTRAS: dict[str, str] = {
    "map": "map",
    "sim": "sim",
    "pgtables": "sim",
    "bench": "bench",
    "vm": "bench",
    "demo": "map",
    "study": "study",
}
#: Top-level modules that only an extra installs, and that extra.
OPTIONAL_MODULES: dict[str, str] = {
    "numpy": "sim",
    "matplotlib": "map",
    "qemu": "bench",
    "distributed": "study",
}


def missing_extra(command: str, exc: ModuleNotFoundError) -> str | None:
    """The extra to install when ``command`` failed to import ``exc.name``; None when
    the missing module is not one an extra provides (a real bug: re-raise)."""
    top = (exc.name or "").split(".")[0]
    if top not in OPTIONAL_MODULES:
        return None
    return COMMAND_EXTRAS.get(command, OPTIONAL_MODULES[top])


def _needs_extra(command: str, extra: str) -> int:
    print(
        f"memhp {command}: needs the '{extra}' extra: pip install 'memhp[{extra}]'", file=sys.stderr
    )
    return 1


def _available(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"memhp.cli.cmd_{name}") is not None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``only``, just that command's module is imported."""
    import argparse
    import importlib

    from memhp import __version__
    from memhp.cli.common import UtilParser

    parser = UtilParser(
        prog="memhp",
        description="Linux physical memory hot-(un)plug: list, online, offline, remove, "
        "diagnose, and a simulated kernel to try it on.",
    )
    parser.add_argument("-V", "--version", action="version", version=f"memhp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, summary in COMMANDS.items():
        if only is not None and name != only:
            if _available(name):
                sub.add_parser(name, help=summary, add_help=False)
            continue
        try:
            mod = importlib.import_module(f"memhp.cli.cmd_{name}")
        except ModuleNotFoundError as e:
            extra = missing_extra(name, e)
            if extra is not None:  # say so when it runs, whatever its arguments
                stub = sub.add_parser(name, help=summary, add_help=False)
                stub.set_defaults(func=lambda _a, n=name, x=extra: _needs_extra(n, x))
                stub.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
                continue
            if e.name != f"memhp.cli.cmd_{name}":
                raise
            continue
        mod.register(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    for a in argv:
        if a.startswith("-"):
            return None  # global options first: build everything
        return a if a in COMMANDS else None
    return None


def run_with_sysfs(argv: Sequence[str], sysfs: SysfsFS) -> tuple[int, str, str]:
    """Run the memhp CLI in-process with ``sysfs`` as its root: (rc, stdout, stderr).

    The bench's tool runner (memhp.bench.drivers.ToolRunner): it runs memhp on the
    simulated kernel without the bench importing the CLI.
    """
    import contextlib
    import io

    from memhp.host.root import SysfsRoot

    args = list(argv)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            ns = build_parser(_command_of(args)).parse_args(args)
            ns.root = SysfsRoot(sysfs, "model")
            rc = int(ns.func(ns))
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
    return rc, out.getvalue(), err.getvalue()


def _list(argv: list[str]) -> int:
    """``memhp list``: straight to its getopt parser, without building argparse's."""
    from memhp.cli.cmd_list import run

    try:
        return run(argv)
    except KeyboardInterrupt:
        print("memhp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "list":
        return _list(args_list[1:])
    parser = build_parser(_command_of(args_list))
    args = parser.parse_args(args_list)
    try:
        rc: int = args.func(args)
    except ModuleNotFoundError as e:
        extra = missing_extra(args.command, e)
        if extra is None:
            raise
        return _needs_extra(args.command, extra)
    except KeyboardInterrupt:
        print("memhp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
