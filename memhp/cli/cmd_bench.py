"""``memhp bench``: real Linux under QEMU against the simulated kernel.

* ``memhp bench vm MACHINE.toml [--run CMD]... [--python]``: boot Debian's Linux
  with the machine's nodes, CPUs, boot memory, slots and maxmem; run the commands,
  or drop to a small REPL (shell commands in the guest, ``:add SIZE NODE ID``,
  ``:del ID``, ``:events``, ``:memhp ARGS``, ``:quit``).
* ``memhp bench diff SCENARIO... [--report FILE] [--model-only | --replay DIR] [--record DIR]``:
  run each scenario on the real kernel (or a recorded run) and on the model and
  compare the trees step by step (exit 0: no differences outside the allowlist,
  1: differences, 2: bad scenario).  ``--model-only`` compares nothing: it checks
  the scenario's own expectations on the model.
* ``memhp bench random KIND [--seed N] [--steps N] [-o FILE]``: a seeded random
  scenario (memhp.bench.random_scenarios) to run with ``bench diff`` and find what
  the model does differently.

The bench itself (memhp.bench) does not import the CLI: ``memhp`` steps run on the
model through :func:`memhp.cli.main.run_with_sysfs`, given to it here.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable

from memhp.bench.initramfs import BENCH_KERNELS
from memhp.bench.random_scenarios import KINDS, generate
from memhp.cli.common import warnx


def _log(quiet: bool) -> Callable[[str], None] | None:
    if quiet:
        return None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def run_diff(args: argparse.Namespace) -> int:
    from memhp.bench.recording import Recording, recording_path
    from memhp.bench.report import summary_line, write_report
    from memhp.bench.runner import diff_scenario
    from memhp.bench.scenario import ScenarioError, load_scenario, scenario_paths
    from memhp.bench.vm import bench_available
    from memhp.cli.main import run_with_sysfs

    try:
        loaded = [load_scenario(p) for p in scenario_paths(args.scenarios)]
    except ScenarioError as e:
        warnx("memhp bench diff", str(e))
        return 2
    log = _log(args.quiet)
    scenarios = []
    for sc in loaded:
        wanted = sc.kernels if args.kernel == "all" else (args.kernel or sc.kernel,)
        for k in wanted:
            if k in sc.kernels:
                scenarios.append(sc.for_kernel(k))
            elif log:
                log(f"{sc.name}: skipped (not for Linux {k}; kernels = {list(sc.kernels)})")
    if not scenarios:
        warnx("memhp bench diff", "no scenarios")
        return 2
    if not args.model_only and args.replay is None:
        for k in sorted({sc.kernel for sc in scenarios}):
            missing = bench_available(k)
            if missing is not None:
                warnx("memhp bench diff", f"QEMU bench unavailable ({missing}); try --model-only")
                return 2
    results = []
    for sc in scenarios:
        if log:
            log(f"{sc.label} ({sc.path}, Linux {sc.kernel})")
        replay = None
        if args.replay is not None:
            try:
                replay = Recording.load(recording_path(sc, args.replay))
            except OSError as e:
                warnx("memhp bench diff", f"{sc.label}: no recording: {e}")
                return 2
        res = diff_scenario(
            sc,
            model_only=args.model_only,
            log=log,
            replay=replay,
            record_dir=args.record,
            tool=run_with_sysfs,
        )
        if res.error and log:
            log(f"  ERROR: {res.error}")
        results.append(res)
    for r in results:
        print(summary_line(r))
    if args.report:
        write_report(results, args.report)
    return 0 if all(r.ok for r in results) else 1


BENCH_EPILOG = """\
scenarios:
  The scenario format (TOML: a machine, a kernel command line, [[step]] tables)
  is documented in memhp/bench/scenario.py and README.md ("memhp bench");
  adding a step action: docs/contributing/bench.md.  The bundled scenarios are in
  tests/scenarios/ (the differential set) and tests/scenarios/trees/ (runs
  recorded for their trees); their recorded real runs in tests/data/real/scenarios/.
  The report is described in docs/bench-report.md.

bench vm MACHINE.toml:
  boots a QEMU guest (Debian's Linux 6.1, busybox initramfs) shaped like the
  machine file (machines/*.toml: nodes, CPUs, boot memory, DIMM slots, maxmem)
  and opens a REPL on it: shell commands in the guest, :add/:del to hot-plug
  DIMMs over QMP, :events, :memhp; or runs --run commands and exits.

bench random KIND:
  writes a random scenario (dimms, dimms-2node, virtio-mem, sysfs-writes, qmp; the
  same seed gives the same file) with wide expectations: run it with
  `bench diff FILE --kernel all --record DIR`; a difference is a model gap to fix
  and pin with a small scenario (docs/contributing/bench.md).

prerequisites:
  qemu-system-x86_64, busybox-static and Debian's linux-image-6.1.0-*-amd64
  unpacked in .cache/kernel (or MEMHP_KERNEL_DIR); .ci/qemu-deps.sh sets them up.
  Without them: `bench diff --model-only`, or `--replay tests/data/real/scenarios`.

run time (TCG, no KVM):
  a guest boots in 5-10 s; a scenario takes 10-30 s (up to a minute on a loaded
  machine, or when it runs memhp or lsmem in the guest); all of tests/scenarios
  about 3-4 minutes on 2 idle cores, up to 10 minutes on a busy machine.
  --model-only and --replay take well under a second per scenario.
"""

REPL_HELP = """commands: shell commands run in the guest;
  :add SIZE NODE ID   hot-add a pc-dimm (e.g. :add 512M 1 dimm1)
  :del ID             QMP device_del and wait for the removal
  :events             QMP events so far
  :memhp ARGS         memhp in the guest (needs --python)
  :quit"""


def _vm_command(vm: object, line: str) -> str:
    from memhp.bench.vm import GuestVM, parse_size

    assert isinstance(vm, GuestVM)
    if not line.startswith(":"):
        r = vm.fs.run(line)
        return r.text + r.stderr.decode(errors="replace") + (f"[rc={r.rc}]\n" if r.rc else "")
    words = shlex.split(line[1:])
    if not words:
        return REPL_HELP + "\n"
    cmd, rest = words[0], words[1:]
    if cmd == "add" and len(rest) == 3:
        dev = vm.platform.hot_add_dimm(parse_size(rest[0]), int(rest[1]), rest[2])
        vm.platform.wait_event("ACPI_DEVICE_OST", 60, lambda e: e.device == rest[2])
        return f"{dev.id}: {dev.size:#x} at {dev.addr:#x} on node {dev.node}, slot {dev.slot}\n"
    if cmd == "del" and len(rest) == 1:
        vm.platform.device_del(rest[0])
        gone = vm.platform.wait_removal(rest[0], 60)
        return f"{rest[0]}: {'removed' if gone else 'the guest refused'}\n"
    if cmd == "events":
        vm.platform.events()
        return "".join(f"{e}\n" for e in vm.platform.log if "event" in e)
    if cmd == "memhp":
        r = vm.run_memhp(rest)
        return r.text + r.stderr.decode(errors="replace") + (f"[rc={r.rc}]\n" if r.rc else "")
    return REPL_HELP + "\n"


def run_vm(args: argparse.Namespace) -> int:
    from memhp.abi.params import AUTO_MOVABLE_RATIO_DEFAULT, ONLINE_POLICIES
    from memhp.bench.scenario import Cmdline
    from memhp.bench.scenario_vm import kernel_of, vm_config_for
    from memhp.bench.vm import GuestVM, bench_available
    from memhp.kernel.machine import MachineError
    from memhp.sim.config import builtin_machine_path, load_machine

    try:
        spec = load_machine(builtin_machine_path(args.machine))
    except MachineError as e:
        warnx("memhp bench vm", str(e))
        return 2
    kernel = args.kernel or kernel_of(spec)
    missing = bench_available(kernel)
    if missing is not None:
        warnx("memhp bench vm", f"QEMU bench unavailable: {missing}")
        return 2
    cmdline = Cmdline(
        args.state or spec.auto_online_blocks,
        spec.movable_node,
        "force" if spec.memmap_on_memory_force else (True if spec.memmap_on_memory else None),
        # the machine's memory_hotplug.* online policy, when not the kernel's default
        online_policy=None if spec.online_policy == ONLINE_POLICIES[0] else spec.online_policy,
        auto_movable_ratio=(
            None
            if spec.auto_movable_ratio == AUTO_MOVABLE_RATIO_DEFAULT
            else spec.auto_movable_ratio
        ),
        auto_movable_numa_aware=None if spec.auto_movable_numa_aware else False,
    )
    cfg = vm_config_for(spec, cmdline, host_python=args.python, kernel=kernel)
    with GuestVM(cfg) as vm:
        assert vm.boot is not None
        print(f"booted {spec.name} on Linux {kernel} in {vm.boot.seconds:.1f}s ({vm.boot.accel}): "
              f"{cfg.cmdline()}", file=sys.stderr)  # fmt: skip
        if args.run:
            rc = 0
            for cmd in args.run:
                out = _vm_command(vm, cmd)
                sys.stdout.write(out)
                if "[rc=" in out:
                    rc = 1
            return rc
        print(REPL_HELP, file=sys.stderr)
        while True:
            try:
                line = input("guest# ").strip()
            except EOFError:
                break
            if line in (":quit", ":q", "exit"):
                break
            if line:
                try:
                    sys.stdout.write(_vm_command(vm, line))
                except Exception as e:  # keep the REPL alive
                    print(f"error: {e}", file=sys.stderr)
    return 0


def run_random(args: argparse.Namespace) -> int:
    """memhp bench random KIND: a seeded random scenario (memhp.bench.random_scenarios)."""
    try:
        text = generate(args.kind, args.seed, args.steps)
    except ValueError as e:
        warnx("memhp bench random", str(e))
        return 2
    if not args.output:
        sys.stdout.write(text)
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        warnx("memhp bench random", f"{args.output}: {e.strerror}")
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "bench",
        help="real Linux under QEMU against the simulated kernel",
        description="Boot Debian's Linux under QEMU with hotpluggable memory, and compare "
        "it with the simulated kernel step by step.",
        epilog=BENCH_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="bench_command", metavar="SUBCOMMAND")
    sub.required = True
    v = sub.add_parser("vm", help="boot a guest from a machine file; REPL or --run")
    v.add_argument("machine", metavar="MACHINE.toml", help="machine file or name in machines/")
    v.add_argument("--run", action="append", metavar="CMD", help="run CMD and exit (repeatable)")
    v.add_argument("--python", action="store_true", help="share the host's Python (for :memhp)")
    v.add_argument(
        "--state",
        choices=("offline", "online", "online_kernel", "online_movable"),
        help="memhp_default_state (default: the machine's auto_online_blocks)",
    )
    v.add_argument(
        "--kernel",
        choices=tuple(BENCH_KERNELS),
        help="the Debian kernel to boot (default: the one the machine's profile models)",
    )
    v.set_defaults(func=run_vm)
    d = sub.add_parser("diff", help="run scenarios on QEMU and the model and compare")
    d.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario files or dirs")
    d.add_argument("--report", metavar="FILE", help="write a report (Markdown, or JSON: *.json)")
    d.add_argument(
        "--model-only",
        action="store_true",
        help="run the model side only: check the steps' expectations, compare nothing",
    )
    d.add_argument("--replay", metavar="DIR", help="compare with recorded real runs in DIR")
    d.add_argument("--record", metavar="DIR", help="save the real runs in DIR (fixtures)")
    d.add_argument(
        "--kernel",
        choices=(*BENCH_KERNELS, "all"),
        help="the Debian kernel to run on (and the profile to model it): "
        "default each scenario's machine's; 'all': every kernel the scenario is for",
    )
    d.add_argument("-q", "--quiet", action="store_true", help="no per-step progress")
    d.set_defaults(func=run_diff)
    g = sub.add_parser("random", help="write a random scenario (to find model gaps)")
    g.add_argument("kind", choices=KINDS, help="what the scenario exercises")
    g.add_argument("--seed", type=int, default=0, help="the seed (default 0)")
    g.add_argument("--steps", type=int, default=30, help="random steps (default 30)")
    g.add_argument("-o", "--output", metavar="FILE", help="write FILE (default: stdout)")
    g.set_defaults(func=run_random)
