"""``memhp map``: the physical memory map of a sysfs root, as a picture or as text.

    memhp map [-s DIR] [-o FILE.png|FILE.svg] [--text] [--width N]
    memhp map --machine seed [--scenario seed|seed-after|kernel-pages|virtio-mem|boot] [-o FILE]

With ``--sysroot`` (or ``/``) it reads sysfs like the other commands; with
``--machine`` it boots a simulated machine (a TOML in machines/ or a path), runs
the scenario and also shows what is inside each block and which block holds the
metadata of which.  virtio-mem devices are drawn with their whole region (the part
without memory block: not plugged) and, in their online blocks, the plugged and
unplugged (PG_offline) sub-blocks.  Without ``-o`` the text map is printed.  matplotlib is only
imported when a picture is written.
"""

from __future__ import annotations

import argparse
import sys

from memhp.cli.common import add_root_option, guarded, open_root

PROG = "memhp map"
SCENARIOS = ("boot", "seed", "seed-after", "kernel-pages", "virtio-mem")


def _machine_map(args: argparse.Namespace) -> object:
    from memhp.host.errors import UsageError
    from memhp.kernel.machine import MachineError
    from memhp.sim.config import builtin_machine_path, load_machine

    try:
        spec = load_machine(builtin_machine_path(args.machine))
    except MachineError as e:
        raise UsageError(str(e)) from None  # names the file, the key and the problem
    except OSError as e:
        raise UsageError(f"{args.machine}: {e.strerror}") from None
    if args.scenario in ("seed", "seed-after"):
        from memhp.kernel.mm.page_alloc import AllocError
        from memhp.sim.machine import PlatformError
        from memhp.viz.demo import seed_scenario_maps

        try:
            before, after = seed_scenario_maps(spec)
        except (AllocError, PlatformError) as e:
            raise UsageError(f"{spec.name}: {e}") from None
        return before if args.scenario == "seed" else after
    if args.scenario == "kernel-pages":
        from memhp.viz.demo import kernel_pages_map

        return kernel_pages_map(spec)
    if args.scenario == "virtio-mem":
        from memhp.viz.demo import virtio_mem_map

        return virtio_mem_map(spec)
    from memhp.kernel.mm.page_alloc import AllocError
    from memhp.sim.machine import SimMachine
    from memhp.viz.model import machine_map

    try:
        booted = SimMachine(spec)
    except AllocError as e:
        raise UsageError(f"{spec.name}: cannot boot: {e}") from None

    return machine_map(booted, title=f"simulated machine {spec.name} after boot")


def _output_problem(path: str) -> str | None:
    """Why a picture cannot be written to ``path`` (checked before any work)."""
    import os

    if not path.lower().endswith((".png", ".svg")):
        return "the output must end in .png or .svg"
    if os.path.isdir(path):
        return "is a directory"
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        return f"no such directory: {parent}"
    real = os.path.realpath(parent)
    if real in ("/proc", "/sys", "/dev") or real.startswith(("/proc/", "/sys/", "/dev/")):
        return f"{parent} is a kernel file system, not a place for pictures"
    if not os.access(parent, os.W_OK):
        return f"cannot write in {parent}"
    return None


def _width(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of columns, got '{text}'") from None
    if n < 8:
        raise argparse.ArgumentTypeError(f"at least 8 columns, got {n}")
    return n


def run(args: argparse.Namespace) -> int:
    from memhp.host.memmap_view import MemoryMap, read_memory_map, text_map

    if args.scenario is not None and not args.machine:
        print(f"{PROG}: --scenario needs --machine (a sysfs root has no scenario)", file=sys.stderr)
        return 1
    if args.output:
        problem = _output_problem(args.output)
        if problem:
            print(f"{PROG}: {args.output}: {problem}", file=sys.stderr)
            return 1

    def go() -> int:
        if args.machine:
            m = _machine_map(args)
        else:
            root = open_root(args)
            m = read_memory_map(root)
        assert isinstance(m, MemoryMap)
        if args.output:
            from memhp.viz.render import save_map

            try:
                info = save_map(m, args.output)
            except OSError as e:
                print(f"{PROG}: {args.output}: {e.strerror}", file=sys.stderr)
                return 1
            counts = ", ".join(f"{n} {k}" for k, n in sorted(info.blocks_per_category.items()))
            print(f"{args.output}: {len(m.blocks)} blocks ({counts})")
        if args.text or not args.output:
            sys.stdout.write(text_map(m, width=args.width))
        return 0

    return guarded(PROG, go)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "map",
        help="draw the physical memory map of a sysfs root",
        description="Draw the physical memory map: each memory block with its state, zone, "
        "node and device, and the holes between them; virtio-mem devices with their region "
        "(not plugged where no block was added) and the plugged and unplugged (PG_offline in "
        "/proc/kpageflags) sub-blocks of their online blocks. With --sysroot (default /) it reads "
        "sysfs; with --machine it boots a simulated machine, runs --scenario and also shows "
        "what is inside each block and which block holds the memmap of which. Without -o "
        "the text map is printed; -o FILE.png or FILE.svg writes a picture.",
    )
    add_root_option(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write a picture (.png or .svg)")
    p.add_argument("--text", action="store_true", help="print the text map (default without -o)")
    p.add_argument(
        "--width", type=_width, default=72, metavar="N", help="columns of the text map (default 72)"
    )
    p.add_argument(
        "--machine",
        metavar="M",
        help="a simulated machine (machines/M.toml or a path) instead of a sysfs root",
    )
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default=None,
        help="with --machine: state to draw (boot; seed: device on node 1 online; "
        "seed-after: after its eject; kernel-pages: a 1G DIMM on a node with CPUs onlined "
        "to ZONE_NORMAL, then a 256M tmpfs file: kernel pages land in hot-added memory; "
        "virtio-mem: the first virtio-mem device asked for 300M, its blocks onlined "
        "movable, then 280M: an online block partly unplugged)",
    )
    p.set_defaults(func=run)
