"""``lsmem`` (util-linux 2.38) on any sysfs root: the data side of ``memhp list``.

The column registry drives parsing (``-o``, ``-S``), help and output, as in
``sys-utils/lsmem.c``.  Reading follows lsmem exactly (which attributes, how a
failed read is treated, how blocks merge) so that output is byte-identical, but
it only reads what the chosen columns and split policy need: the output does not
change and listing 16,384 blocks stays fast.
"""

from __future__ import annotations

import errno
import gc
import itertools

from memhp.abi.paths import SYS_FIRMWARE_MEMORY, SYS_MEMORY, SYS_NODE
from memhp.abi.units import size_to_human_string
from memhp.abi.zones import ZONE_NAMES as KERNEL_ZONE_TABLE
from memhp.host.errors import SysfsError
from memhp.host.root import SysfsRoot
from memhp.host.scols import Column, render

# Not typing.TYPE_CHECKING: ``memhp list`` starts without importing typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from memhp.host.scols import Format

STATE_ONLINE, STATE_OFFLINE, STATE_GOING_OFFLINE, STATE_UNKNOWN = 0, 1, 2, 3

#: lsmem's zone table (``enum zone_id``): the kernel's zones, then "None" and
#: "Unknown"; index is the zone id.
ZONE_NAMES: tuple[str, ...] = (*KERNEL_ZONE_TABLE, "None", "Unknown")
ZONE_UNKNOWN = 7
MAX_NR_ZONES = 8
_ZONE_IDS = {n.lower(): i for i, n in enumerate(ZONE_NAMES)}


class ColDesc:
    """One output column: header, width hint, alignment, help, JSON type.

    ``json_type`` is "number"/"boolean" for typed JSON values (SIZE becomes a
    number with ``-b``); ``lsmem238`` says whether Debian 12's lsmem knows it.
    """

    __slots__ = ("help", "json_type", "lsmem238", "name", "right", "whint")

    def __init__(
        self,
        name: str,
        whint: float,
        right: bool,
        help: str,
        json_type: str = "string",
        lsmem238: bool = True,
    ) -> None:
        self.name = name
        self.whint = whint
        self.right = right
        self.help = help
        self.json_type = json_type
        self.lsmem238 = lsmem238


COLUMNS: tuple[ColDesc, ...] = (
    ColDesc("RANGE", 0, False, "start and end address of the memory range"),
    ColDesc("SIZE", 5, True, "size of the memory range"),
    ColDesc("STATE", 0, True, "online status of the memory range"),
    ColDesc("REMOVABLE", 0, True, "memory is removable", "boolean"),
    ColDesc("BLOCK", 0, True, "memory block number or blocks range"),
    ColDesc("NODE", 0, True, "numa node of memory", "number"),
    ColDesc("ZONES", 0, True, "valid zones for the memory range"),
    ColDesc("CONFIGURED", 0, True, "configuration status of the memory range", lsmem238=False),
    ColDesc(
        "MEMMAP-ON-MEMORY", 0, True, "memmap-on-memory status of the memory range", lsmem238=False
    ),
    ColDesc("DEVICE", 0, True, "memory device the block belongs to", lsmem238=False),
)
COL_RANGE, COL_SIZE, COL_STATE, COL_REMOVABLE, COL_BLOCK = range(5)
COL_NODE, COL_ZONES, COL_CONFIG, COL_MEMMAP, COL_DEVICE = range(5, len(COLUMNS))
DEFAULT_COLUMNS: tuple[int, ...] = (COL_RANGE, COL_SIZE, COL_STATE, COL_REMOVABLE, COL_BLOCK)
#: ``--output-all``: the columns lsmem 2.38 has (keeps its output byte-identical).
ALL_COLUMNS: tuple[int, ...] = tuple(i for i, c in enumerate(COLUMNS) if c.lsmem238)
#: lsmem's ``columns[ARRAY_SIZE(coldescs) * 2]`` limit (7 columns there).
MAX_COLUMNS = len(ALL_COLUMNS) * 2


class LsmemError(Exception):
    """A fatal lsmem error: message (may be empty: lsmem exits silently) and code."""

    def __init__(self, message: str, code: int = 1, tryhelp: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.tryhelp = tryhelp


def column_name_to_id(name: str, rest: str) -> int:
    """Column id of ``name`` (case-insensitive); lsmem's warning shows ``rest``."""
    for i, c in enumerate(COLUMNS):
        if c.name.lower() == name.lower():
            return i
    raise LsmemError(f"unknown column: {rest}")


def string_to_idarray(text: str, limit: int) -> list[int]:
    """util-linux ``string_to_idarray``, quirks included.

    A failure raises :class:`LsmemError` (with an empty message where lsmem exits
    silently); the last name runs to the end of the string (a trailing comma is
    part of it) and the "unknown column" warning shows the rest of the list.
    """
    if not text:
        raise LsmemError("")
    out: list[int] = []
    begin: int | None = None
    n = len(text)
    for p in range(n):
        if len(out) >= limit:
            raise LsmemError("")
        if begin is None:
            begin = p
        end: int | None = None
        if text[p] == ",":
            end = p
        if p + 1 == n:
            end = p + 1
        if end is None:
            continue
        if end <= begin:
            raise LsmemError("")
        out.append(column_name_to_id(text[begin:end], text[begin:]))
        begin = None
    return out


def string_add_to_idarray(text: str, current: list[int], limit: int) -> list[int]:
    """util-linux ``string_add_to_idarray``: ``+LIST`` appends, ``LIST`` replaces."""
    if not text:
        raise LsmemError("")
    if text[0] == "+":
        return current + string_to_idarray(text[1:], limit - len(current))
    return string_to_idarray(text, limit)


class Block:
    """A run of ``count`` blocks from ``index`` (lsmem's ``struct memory_block``)."""

    __slots__ = (
        "config",
        "count",
        "device",
        "index",
        "memmap",
        "node",
        "removable",
        "state",
        "zones",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.count = 1
        self.state = STATE_UNKNOWN
        self.removable = False
        self.node = -1
        self.zones: tuple[int, ...] = ()
        self.config = ""
        self.memmap = ""
        self.device = ""


class Options:
    """What ``lsmem`` was asked for (``split`` None: follow the output columns)."""

    def __init__(self) -> None:
        self.columns: list[int] = list(DEFAULT_COLUMNS)
        self.split: list[int] | None = None
        self.list_all = False
        self.bytes = False
        self.fmt: Format = "human"
        self.noheadings = False
        self.want_table = True
        self.want_summary = True


def parse_s32(raw: bytes) -> int | None:
    """``fscanf("%d")``: leading blanks, a sign, digits; None when there are none."""
    text = raw.lstrip()
    i = 1 if text[:1] in (b"+", b"-") else 0
    j = i
    while j < len(text) and 48 <= text[j] <= 57:
        j += 1
    return int(text[:j]) if j > i else None


def parse_hex(raw: bytes) -> int:
    """``strtoumax(s, NULL, 16)``: leading blanks, optional 0x, hex digits."""
    text = raw.lstrip().lower()
    if text.startswith(b"0x") and text[2:3] and text[2:3] in b"0123456789abcdef":
        text = text[2:]
    j = 0
    while j < len(text) and text[j : j + 1] in b"0123456789abcdef":
        j += 1
    return int(text[:j], 16) if j else 0


def _state_id(raw: bytes) -> int:
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if raw == b"online":
        return STATE_ONLINE
    if raw == b"offline":
        return STATE_OFFLINE
    if raw == b"going-offline":
        return STATE_GOING_OFFLINE
    return STATE_UNKNOWN


def parse_zones(raw: bytes) -> tuple[int, ...]:
    """lsmem's reading of ``valid_zones``: ``strtok(" ")``, at most 8 zone ids."""
    text = raw.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    toks = [t for t in text.split(" ") if t][:MAX_NR_ZONES]
    return tuple(_ZONE_IDS.get(t.lower(), ZONE_UNKNOWN) for t in toks)


class Lsmem:
    """Reads the blocks of a root the way lsmem does and renders the table."""

    def __init__(self, root: SysfsRoot, opts: Options) -> None:
        self.root = root
        self.opts = opts
        self.block_size = 0
        self.mem_online = 0
        self.mem_offline = 0
        self.have_nodes = False
        self.have_zones = False
        self.blocks: list[Block] = []
        self.names: list[str] = []
        self.indices: list[int] = []  # the block numbers of ``names``
        self.entries: list[str] | None = None  # the listing check_root made

    # -- reading -------------------------------------------------------------------

    def check_root(self) -> None:
        """``cannot open /sys/devices/system/memory`` when the root has none."""
        try:
            self.entries = self.root.listdir(SYS_MEMORY)
        except SysfsError as e:
            raise LsmemError(f"cannot open {SYS_MEMORY}: {e.strerror}") from None

    def _block_node(self, name: str) -> int:
        try:
            entries = self.root.listdir(f"{SYS_MEMORY}/{name}")
        except SysfsError as e:
            raise LsmemError(f"Failed to open {name}: {e.strerror}") from None
        for de in entries:
            if de.startswith("node") and len(de) > 4 and de[4:].isdigit():
                return int(de[4:])
        return -1

    def read_basic_info(self) -> None:
        if not self.root.exists(f"{SYS_MEMORY}/block_size_bytes"):
            raise LsmemError("This system does not support memory blocks")
        entries = self.entries
        if entries is None:
            entries = self.root.listdir(SYS_MEMORY)
        tails = [d[6:] for d in entries if d[:6] == "memory"]
        # isdigit() also takes digits that are not ASCII (lsmem's isdigit() does not)
        tails = [t for t in tails if t.isdigit() and t.isascii()]
        if not tails:
            real = self.root.real_path(SYS_MEMORY) or SYS_MEMORY
            # lsmem prints a stale errno here; say what is wrong instead.
            raise LsmemError(f"Failed to read {real}: no memory blocks")
        # by number, then by name ("memory01" and "memory1" are both block 1)
        numbers = list(map(int, tails))
        by_number = dict(zip(numbers, tails, strict=True))
        if len(by_number) == len(tails):
            self.indices = sorted(by_number)
            self.names = names = ["memory" + by_number[i] for i in self.indices]
        else:
            names = ["memory" + t for t in tails]
            pairs = sorted(zip(numbers, names, strict=True))
            self.indices = [p[0] for p in pairs]
            self.names = names = [p[1] for p in pairs]
        if self._block_node(names[0]) != -1:
            self.have_nodes = True
        # "The valid_zones sysmem attribute was introduced with kernel 3.18"
        self.have_zones = self.root.exists(f"{SYS_MEMORY}/memory0/valid_zones")

    def read_info(self, summary_only: bool = False) -> None:
        root = self.root
        try:
            raw = root.read_bytes(f"{SYS_MEMORY}/block_size_bytes")[:127]
        except SysfsError as e:
            raise LsmemError(f"failed to read memory block size: {e.strerror}") from None
        if not raw:
            raise LsmemError("failed to read memory block size: Success")
        self.block_size = bs = parse_hex(raw)
        if bs > 0xFFFFFFFFFFFFFFFF:  # strtoumax() sets ERANGE
            raise LsmemError("failed to read memory block size: Numerical result out of range")
        o = self.opts
        split = o.split if o.split is not None else o.columns
        cols = set() if summary_only else set(o.columns)
        split_state = not summary_only and COL_STATE in split
        split_removable = not summary_only and COL_REMOVABLE in split
        split_node = not summary_only and COL_NODE in split and self.have_nodes
        split_zones = not summary_only and COL_ZONES in split and self.have_zones
        need_removable = split_removable or COL_REMOVABLE in cols
        need_node = self.have_nodes and (split_node or COL_NODE in cols)
        need_zones = self.have_zones and (split_zones or COL_ZONES in cols)
        need_config = COL_CONFIG in cols
        need_memmap = COL_MEMMAP in cols
        need_device = COL_DEVICE in cols
        merge = not o.list_all and not summary_only
        state_of: dict[bytes | None, int] = {b"online\n": STATE_ONLINE, b"offline\n": STATE_OFFLINE}
        if summary_only:
            self._count_states(state_of)
            root.close()
            return
        names = self.names
        n = len(names)
        # One pass of reads, row by row: the attributes of each block, in lsmem's
        # order of interest (a failed read is None, as lsmem ignores it).
        attrs = ("state",) + ("removable",) * need_removable + ("valid_zones",) * need_zones
        table = root.read_table(SYS_MEMORY, names, attrs)
        k = len(attrs)
        states = table[0::k]
        nothing: list[bytes | None] = [None] * n
        removables = table[1::k] if need_removable else nothing
        valid_zones = table[k - 1 :: k] if need_zones else nothing
        del table
        # The node of each block where the ``nodeN/`` listings name it once and the
        # block's own ``nodeN`` entry exists; None: read its directory as lsmem does.
        nodes: list[int | None] = self._nodes() if need_node else [-1] * n
        if None in states or None in nodes:
            self._read_errors(states, nodes)
        per_block: list[list[bytes | None] | list[int | None] | list[str]] = [
            states,
            removables,
            nodes,
            valid_zones,
        ]
        extras = need_config or need_memmap or need_device
        if extras:
            fw = SYS_FIRMWARE_MEMORY
            empty = [""] * n
            per_block += [
                [self._yes_no(f"{fw}/{m}/config") for m in names] if need_config else empty,
                [self._yes_no(f"{fw}/{m}/memmap_on_memory") for m in names]
                if need_memmap
                else empty,
                [self._device(f"{SYS_MEMORY}/{m}/") for m in names] if need_device else empty,
            ]
        state_of[None] = STATE_UNKNOWN
        removable_of: dict[bytes | None, bool] = {}
        zones_of: dict[bytes | None, tuple[int, ...]] = {None: ()}
        blocks = self.blocks
        curr: Block | None = None
        nxt = -1  # the index that continues curr (-1: nothing merges into curr)
        # The raw contents of the previous block's attributes: a block whose raw
        # contents are the same as its predecessor's merges without parsing.
        prev_key: tuple[object, ...] | None = None
        curr_mergeable = False  # curr has no Unknown zone (split on ZONES)
        config = memmap = device = ""
        for index, key in zip(self.indices, zip(*per_block, strict=True), strict=True):
            if index == nxt and key == prev_key and curr_mergeable:
                nxt += 1
                continue
            prev_key = key
            raw_state, raw_removable, node, raw_zones = key[:4]
            if extras:
                config, memmap, device = key[4:]
            state = state_of.get(raw_state, -1)
            if state == -1:
                state = state_of[raw_state] = _state_id(raw_state)
            removable = removable_of.get(raw_removable)
            if removable is None:
                removable = removable_of[raw_removable] = (
                    raw_removable is not None and parse_s32(raw_removable) == 1
                )
            zones = zones_of.get(raw_zones)
            if zones is None:
                assert raw_zones is not None
                zones = zones_of[raw_zones] = parse_zones(raw_zones)
            if (
                index == nxt
                and curr is not None
                and not (split_state and curr.state != state)
                and not (split_removable and curr.removable != removable)
                and not (split_node and curr.node != node)
                and not (split_zones and (curr.zones != zones or ZONE_UNKNOWN in curr.zones))
                and curr.config == config
                and curr.memmap == memmap
                and curr.device == device
            ):
                nxt += 1
                continue
            if curr is not None and nxt != -1:
                curr.count = nxt - curr.index
            blk = Block(index)
            blk.state = state
            blk.removable = removable
            blk.node = node
            blk.zones = zones
            blk.config = config
            blk.memmap = memmap
            blk.device = device
            blocks.append(blk)
            curr = blk
            nxt = index + 1 if merge else -1
            curr_mergeable = not (split_zones and ZONE_UNKNOWN in zones)
        if curr is not None and nxt != -1:
            curr.count = nxt - curr.index
        self._totals(states, state_of)
        root.close()

    def _state_error(self, name: str) -> int:
        """The state of a block whose ``state`` could not be read: unknown, unless
        the block is no directory (lsmem cannot open it: fatal)."""
        try:
            self.root.dir_reader(SYS_MEMORY)(name + "/state")
        except SysfsError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP):
                raise LsmemError(f"Failed to open {name}: {e.strerror}") from None
            return STATE_UNKNOWN
        return STATE_UNKNOWN  # it reads now: it changed under us; lsmem saw it fail

    def _read_errors(self, states: list[bytes | None], nodes: list[int | None]) -> None:
        """What lsmem does, block by block, where a state could not be read or a
        node is to be read from the block's directory (``nodes[i]`` None, set
        here): the state first, then the node (either may end the listing: a
        block that is no directory).  lsmem reads the node of every block when
        the first has one, whatever the columns: a block whose state could not be
        read has its directory read too."""
        have_nodes = self.have_nodes
        for i, name in enumerate(self.names):
            if states[i] is None:
                self._state_error(name)
                if have_nodes and nodes[i] is not None:
                    self._block_node(name)
            if nodes[i] is None:
                nodes[i] = self._block_node(name)

    def _count_states(self, state_of: dict[bytes | None, int]) -> None:
        """``--summary=only``: online and offline totals, reading only ``state``."""
        names = self.names
        states = self.root.read_table(SYS_MEMORY, names, ("state",))
        if None in states:
            self._read_errors(states, [-1] * len(names))
        self._totals(states, state_of)

    def _totals(self, states: list[bytes | None], state_of: dict[bytes | None, int]) -> None:
        """Online and offline totals: one count of each raw content that means online."""
        for raw_state in set(states):
            if raw_state not in state_of:
                state_of[raw_state] = STATE_UNKNOWN if raw_state is None else _state_id(raw_state)
        bs = self.block_size
        online = sum(states.count(r) for r, s in state_of.items() if s == STATE_ONLINE) * bs
        self.mem_online = online
        self.mem_offline = len(states) * bs - online

    def _nodes(self) -> list[int | None]:
        """The node of each block (in ``names`` order) where the ``nodeN/memoryM``
        links name it once and the block's own ``nodeN`` entry exists (one listdir
        per node, one ``faccessat`` per block); None where lsmem's way must be
        taken (the block's directory read: :meth:`_block_node`).

        The kernel creates both links of a pair together; a block named by more
        than one node, or by none, or without its own link is read as lsmem does.
        """
        root = self.root
        names = self.names
        try:
            entries = root.listdir(SYS_NODE)
        except SysfsError:
            return [None] * len(names)
        blocks = set(names)
        linked: list[tuple[str, int, set[str]]] = []
        seen: set[str] = set()
        dup: set[str] = set()
        for nd in entries:
            if not (nd[:4] == "node" and nd[4:].isdigit() and nd.isascii()):
                continue
            try:
                mine = blocks.intersection(root.listdir(f"{SYS_NODE}/{nd}"))
            except SysfsError:
                continue
            dup |= seen & mine
            seen |= mine
            linked.append(("/" + nd, int(nd[4:]), mine))
        node_of: dict[str, int] = {}
        for link, node, mine in linked:
            these = list(mine - dup)
            ok = root.probe_table(SYS_MEMORY, these, link)
            node_of.update(dict.fromkeys(itertools.compress(these, ok), node))
        return list(map(node_of.get, names))

    def _yes_no(self, path: str) -> str:
        try:
            text = self.root.read_str(path).strip()
        except SysfsError:
            return ""
        return {"1": "yes", "0": "no", "Y": "yes", "N": "no"}.get(text, text)

    def _device(self, base: str) -> str:
        target = self.root.link_target(base + "firmware_node")
        return target.rsplit("/", 1)[-1] if target else ""

    # -- output --------------------------------------------------------------------

    def cell(self, col: int, blk: Block) -> str:
        bs = self.block_size
        if col == COL_RANGE:
            start = blk.index * bs
            end = (start + blk.count * bs - 1) & 0xFFFFFFFFFFFFFFFF  # uint64_t arithmetic
            return f"0x{start & 0xFFFFFFFFFFFFFFFF:016x}-0x{end:016x}"
        if col == COL_SIZE:
            size = blk.count * bs
            return str(size) if self.opts.bytes else size_to_human_string(size)
        if col == COL_STATE:
            return ("online", "offline", "on->off", "?")[blk.state]
        if col == COL_REMOVABLE:
            if blk.state == STATE_ONLINE:
                return "yes" if blk.removable else "no"
            return ""
        if col == COL_BLOCK:
            if blk.count == 1:
                return str(blk.index)
            return f"{blk.index}-{blk.index + blk.count - 1}"
        if col == COL_NODE:
            return str(blk.node) if self.have_nodes else ""
        if col == COL_ZONES:
            return "/".join(ZONE_NAMES[z] for z in blk.zones) if self.have_zones else ""
        if col == COL_CONFIG:
            return blk.config
        if col == COL_MEMMAP:
            return blk.memmap
        return blk.device

    def table(self) -> str:
        o = self.opts
        cols: list[Column] = []
        for cid in o.columns:
            d = COLUMNS[cid]
            jt = d.json_type
            if cid == COL_SIZE and o.bytes:
                jt = "number"
            cols.append(Column(d.name, d.whint, d.right, jt))
        rows = [[self.cell(c, b) for c in o.columns] for b in self.blocks]
        return render(cols, rows, o.fmt, o.noheadings, "memory")

    def summary(self) -> str:
        if self.opts.bytes:
            return (
                f"{'Memory block size:':<23} {self.block_size:15d}\n"
                f"{'Total online memory:':<23} {self.mem_online:15d}\n"
                f"{'Total offline memory:':<23} {self.mem_offline:15d}\n"
            )
        h = size_to_human_string
        return (
            f"{'Memory block size:':<23} {h(self.block_size):>5}\n"
            f"{'Total online memory:':<23} {h(self.mem_online):>5}\n"
            f"{'Total offline memory:':<23} {h(self.mem_offline):>5}\n"
        )

    def run(self) -> str:
        """Everything lsmem prints on stdout (raises :class:`LsmemError`).

        The cyclic garbage collector is paused meanwhile: the tens of thousands
        of tuples and lists of a listing hold no cycles, and its passes over
        them were ~2% of the CPU time of a listing of 16,384 blocks."""
        enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if enabled:
                gc.enable()

    def _run(self) -> str:
        self.check_root()
        o = self.opts
        if not o.want_table and o.want_summary:
            self.read_basic_info()
            self.read_info(summary_only=True)
            return self.summary()
        self.read_basic_info()
        self.read_info()
        out = ""
        if o.want_table:
            out = self.table()
            if o.want_summary:
                out += "\n"
        if o.want_summary:
            out += self.summary()
        return out
