"""Snapshots of sysfs trees: capture, store on disk, compare.

A :class:`Snapshot` maps root-relative paths to :class:`Entry` objects.  It is the
common currency of the project: the simulated kernel is captured into one, the
bench captures a real guest into one, the reference trace of
``shared/reference/linux-6.1`` parses into them, and :func:`write_tree` turns any of
them into a directory that ``lsmem --sysroot`` or ``memhp --sysroot`` can read.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from memhp.abi.fs import Kind, SysfsFS, normpath

#: The parts of sysfs the memory hotplug subsystem owns (re-exported from paths).
from memhp.abi.paths import MEMORY_ROOTS as MEMORY_ROOTS


@dataclass(frozen=True)
class Entry:
    """One captured path: a directory, a file (value or read errno) or a link."""

    kind: Kind
    value: str | None = None  # file content; None when unreadable
    read_errno: int = 0  # errno of the failed read (EACCES for write-only files)
    target: str | None = None  # link target
    mode: int = 0o644

    def to_json(self) -> dict[str, object]:
        d: dict[str, object] = {"kind": self.kind.value, "mode": self.mode}
        if self.value is not None:
            d["value"] = self.value
        if self.read_errno:
            d["errno"] = self.read_errno
        if self.target is not None:
            d["target"] = self.target
        return d

    @staticmethod
    def from_json(d: dict[str, object]) -> Entry:
        kind = Kind.of(str(d["kind"]))
        value = d.get("value")
        target = d.get("target")
        err = d.get("errno", 0)
        mode = d.get("mode", 0o644)
        return Entry(
            kind,
            value=str(value) if value is not None else None,
            read_errno=int(err) if isinstance(err, int) else 0,
            target=str(target) if target is not None else None,
            mode=int(mode) if isinstance(mode, int) else 0o644,
        )


Snapshot = dict[str, Entry]


def walk(fs: SysfsFS, top: str, follow_dir_links: bool = False) -> Iterator[tuple[str, Entry]]:
    """Yield every path under ``top`` (itself included) with its entry.

    Links are recorded, never followed (sysfs is full of cycles).
    """
    top = normpath(top)
    try:
        st = fs.lstat(top)
    except OSError:
        return
    stack = [(top, st.kind, st.mode)]
    while stack:
        path, kind, mode = stack.pop()
        if kind is Kind.DIR:
            yield path, Entry(Kind.DIR, mode=mode)
            try:
                names = sorted(fs.listdir(path), reverse=True)
            except OSError:
                continue
            for name in names:
                child = path.rstrip("/") + "/" + name
                try:
                    cst = fs.lstat(child)
                except OSError:
                    continue
                stack.append((child, cst.kind, cst.mode))
        elif kind is Kind.LINK:
            yield path, Entry(Kind.LINK, target=fs.readlink(path), mode=0o777)
        else:
            try:
                value: str | None = fs.read(path).decode("utf-8", "replace")
                err = 0
            except OSError as e:
                value, err = None, e.errno or errno.EIO
            yield path, Entry(Kind.FILE, value=value, read_errno=err, mode=mode)


def capture(fs: SysfsFS, roots: Iterable[str] = MEMORY_ROOTS) -> Snapshot:
    """Capture the trees under ``roots`` of a sysfs root into a snapshot."""
    snap: Snapshot = {}
    for top in roots:
        for path, entry in walk(fs, top):
            snap[path] = entry
    return snap


def write_tree(snap: Snapshot, dest: str, clean: bool = True) -> None:
    """Materialise ``snap`` as real files, directories and symlinks under ``dest``.

    Unreadable files (write-only attributes) are created empty with their mode, so
    that tools see them as the kernel shows them.
    """
    if clean and os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest, exist_ok=True)
    for path in sorted(snap):
        entry = snap[path]
        real = os.path.join(dest, path.lstrip("/"))
        if entry.kind is Kind.DIR:
            os.makedirs(real, exist_ok=True)
            continue
        os.makedirs(os.path.dirname(real), exist_ok=True)
        if entry.kind is Kind.LINK:
            assert entry.target is not None
            if os.path.lexists(real):
                os.unlink(real)
            os.symlink(entry.target, real)
        else:
            with open(real, "w", encoding="utf-8") as f:
                f.write(entry.value or "")
            os.chmod(real, entry.mode)


def save_json(snap: Snapshot, path: str) -> None:
    """Store a snapshot as JSON (sorted, stable diffs)."""
    data = {p: snap[p].to_json() for p in sorted(snap)}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=0, sort_keys=True)
        f.write("\n")


def load_json(path: str) -> Snapshot:
    """Load a snapshot stored with :func:`save_json`."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return {p: Entry.from_json(v) for p, v in data.items()}


@dataclass(frozen=True)
class TraceStep:
    """One ``=== DUMP name`` section of a reference trace, and the commands before it."""

    name: str
    snapshot: Snapshot
    meminfo: dict[str, str]
    commands: list[tuple[str, list[str], int]]  # (command, output lines, rc)


def parse_trace(text: str) -> list[TraceStep]:
    """Parse a reference trace (``F path = value``, ``L path -> target``, ``D path``).

    File values in the trace show newlines as ``|``; long values were cut by the
    recorder, so a value that does not end in ``|`` is incomplete and is kept as
    read (callers compare those by prefix).
    """
    steps: list[TraceStep] = []
    commands: list[tuple[str, list[str], int]] = []
    cur: Snapshot | None = None
    meminfo: dict[str, str] = {}
    name = ""
    pending_cmd: str | None = None
    pending_out: list[str] = []
    for line in text.splitlines():
        if line.startswith("=== DUMP "):
            name = line[len("=== DUMP ") :].strip()
            cur, meminfo = {}, {}
            continue
        if line.startswith("=== END "):
            assert cur is not None
            steps.append(TraceStep(name, cur, meminfo, commands))
            commands, cur = [], None
            continue
        if cur is None:
            if line.startswith("$ "):
                pending_cmd, pending_out = line[2:], []
            elif line.startswith("rc=") and pending_cmd is not None:
                commands.append((pending_cmd, pending_out, int(line[3:])))
                pending_cmd = None
            elif pending_cmd is not None:
                pending_out.append(line)
            continue
        if line.startswith("D "):
            cur[line[2:].strip()] = Entry(Kind.DIR, mode=0o755)
        elif line.startswith("L "):
            path, _, target = line[2:].partition(" -> ")
            cur[path.strip()] = Entry(Kind.LINK, target=target.strip(), mode=0o777)
        elif line.startswith("F "):
            path, _, value = line[2:].partition(" = ")
            path = path.strip()
            if "Permission denied" in value and value.startswith("cat: "):
                cur[path] = Entry(Kind.FILE, read_errno=errno.EACCES, mode=0o200)
            else:
                cur[path] = Entry(Kind.FILE, value=value.replace("|", "\n"), mode=0o444)
        elif line.startswith("W "):
            cur[line[2:].strip()] = Entry(Kind.FILE, read_errno=errno.EACCES, mode=0o200)
        elif ":" in line:
            key, _, val = line.partition(":")
            meminfo[key.strip()] = val.strip()
    # Parents of captured paths that the recorder did not list are directories.
    for step in steps:
        for path in list(step.snapshot):
            parent = path.rsplit("/", 1)[0]
            while (
                parent
                and parent not in step.snapshot
                and any(parent.startswith(r + "/") for r in MEMORY_ROOTS)
            ):
                step.snapshot[parent] = Entry(Kind.DIR, mode=0o755)
                parent = parent.rsplit("/", 1)[0]
    return steps


def diff(a: Snapshot, b: Snapshot) -> list[str]:
    """Human-readable differences between two snapshots (empty when equal)."""
    out: list[str] = []
    for path in sorted(set(a) | set(b)):
        ea, eb = a.get(path), b.get(path)
        if ea is None:
            out.append(f"+ {path}")
        elif eb is None:
            out.append(f"- {path}")
        elif ea.kind != eb.kind:
            out.append(f"~ {path}: {ea.kind.name} != {eb.kind.name}")
        elif ea.kind is Kind.LINK and ea.target != eb.target:
            out.append(f"~ {path}: -> {ea.target} != -> {eb.target}")
        elif ea.kind is Kind.FILE and (ea.value != eb.value or ea.read_errno != eb.read_errno):
            out.append(f"~ {path}: {ea.value!r} != {eb.value!r}")
    return out
