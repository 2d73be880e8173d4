"""``memhp map``: the physical memory map of a sysfs root, as a picture or as text.

    memhp map [-s DIR] [-o FILE.png|FILE.svg] [--text] [--width N]
    memhp map --machine seed [--scenario seed|boot] [-o FILE] [--text]

With ``--sysroot`` (or ``/``) it reads sysfs like the other commands; with
``--machine`` it boots a simulated machine (a TOML in machines/ or a path), runs
the scenario and also shows what is inside each block and which block holds the
metadata of which.  Without ``-o`` the text map is printed.  matplotlib is only
imported when a picture is written.
"""

from __future__ import annotations

import argparse
import sys

from memhp.cli.common import add_root_option, guarded, open_root

PROG = "memhp map"
SCENARIOS = ("boot", "seed", "seed-after")


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
        from memhp.viz.demo import seed_scenario_maps

        before, after = seed_scenario_maps(spec)
        return before if args.scenario == "seed" else after
    from memhp.sim.machine import SimMachine
    from memhp.viz.model import machine_map

    return machine_map(SimMachine(spec), title=f"simulated machine {spec.name} after boot")


def run(args: argparse.Namespace) -> int:
    from memhp.host.memmap_view import MemoryMap, read_memory_map, text_map

    def go() -> int:
        if args.machine:
            m = _machine_map(args)
        else:
            root = open_root(args)
            m = read_memory_map(root)
        assert isinstance(m, MemoryMap)
        if args.output:
            if not args.output.lower().endswith((".png", ".svg")):
                print(
                    f"{PROG}: {args.output}: the output must end in .png or .svg", file=sys.stderr
                )
                return 1
            from memhp.viz.render import save_map

            info = save_map(m, args.output)
            counts = ", ".join(f"{n} {k}" for k, n in sorted(info.blocks_per_category.items()))
            print(f"{args.output}: {len(m.blocks)} blocks ({counts})")
        if args.text or not args.output:
            sys.stdout.write(text_map(m, width=args.width))
        return 0

    return guarded(PROG, go)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("map", help="draw the physical memory map of a sysfs root")
    add_root_option(p)
    p.add_argument("-o", "--output", metavar="FILE", help="write a picture (.png or .svg)")
    p.add_argument("--text", action="store_true", help="print the text map (default without -o)")
    p.add_argument("--width", type=int, default=72, help="columns of the text map (default 72)")
    p.add_argument(
        "--machine",
        metavar="M",
        help="a simulated machine (machines/M.toml or a path) instead of a sysfs root",
    )
    p.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="boot",
        help="with --machine: state to draw (boot; seed: device on node 1 online; "
        "seed-after: after its eject)",
    )
    p.set_defaults(func=run)
