"""What a ``memhp remove`` in progress has offlined, so that nothing stays unexplained.

``memhp remove`` records each block (with its zone) *before* it writes
``offline`` and drops the record when the block is online again or the device
is gone; a run that ends normally leaves no journal.  After SIGKILL or a crash
the next ``memhp remove`` / ``memhp devices`` says which blocks a previous run
left offline and ``memhp restore`` onlines them again in their zones.

One small JSON file per sysroot, keyed by the sysroot's real path, in
``$XDG_RUNTIME_DIR/memhp`` (the user's runtime directory) or, for root,
``/run/memhp``; directory mode 0700, file mode 0600.  Without either (a user
without a runtime directory) there is no journal.  A journal that cannot be
read is reported in one line, never a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

from memhp.host.errors import HostError

#: Format version of the journal file.
VERSION = 1


class JournalError(HostError):
    """The journal exists but cannot be read or written."""


@dataclass
class Entry:
    """A remove in progress (or one that died): its device and offlined blocks."""

    sysroot: str
    device: str
    pid: int
    #: block index -> zone it was online in ("Movable", "Normal", ...).
    blocks: dict[int, str] = field(default_factory=dict)


def journal_dir() -> str | None:
    """Where journals live: ``$XDG_RUNTIME_DIR/memhp``, /run/memhp for root, else None."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "memhp")
    if os.geteuid() == 0:
        return "/run/memhp"
    return None


def real_sysroot(sysroot: str | None) -> str:
    return os.path.realpath(sysroot or "/")


class Journal:
    """The journal of removes on one sysroot."""

    def __init__(self, sysroot: str | None, directory: str | None = None) -> None:
        self.sysroot = real_sysroot(sysroot)
        self.dir = directory if directory is not None else journal_dir()
        key = hashlib.sha256(self.sysroot.encode()).hexdigest()[:16]
        self.path = os.path.join(self.dir, f"remove-{key}.json") if self.dir else None

    # ------------------------------------------------------------ read
    def load(self) -> Entry | None:
        """The recorded entry, or None; :class:`JournalError` if unreadable."""
        if self.path is None:
            return None
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise JournalError(f"journal {self.path}: {e.strerror}") from None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError("unknown format")
            blocks = data["blocks"]
            if not isinstance(blocks, dict):
                raise ValueError("bad blocks")
            entry = Entry(
                str(data["sysroot"]),
                str(data["device"]),
                int(data["pid"]),
                {int(k): str(v) for k, v in blocks.items()},
            )
        except (ValueError, KeyError, TypeError):
            raise JournalError(
                f"journal {self.path} is corrupt (remove it, then check the blocks with "
                "'memhp list')"
            ) from None
        return entry

    # ------------------------------------------------------------ write
    def save(self, entry: Entry) -> None:
        """Write ``entry`` atomically (a new file renamed over the old one)."""
        if self.path is None or self.dir is None:
            return
        data = {
            "version": VERSION,
            "sysroot": entry.sysroot,
            "device": entry.device,
            "pid": entry.pid,
            "blocks": {str(k): v for k, v in sorted(entry.blocks.items())},
        }
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except OSError as e:
            raise JournalError(f"journal {self.path}: {e.strerror}") from None

    def clear(self) -> None:
        if self.path is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise JournalError(f"journal {self.path}: {e.strerror}") from None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunJournal:
    """The journal as one ``memhp remove`` run keeps it: block by block.

    Blocks an earlier run left offline (``inherited``) stay recorded until
    ``memhp restore`` or the device's removal makes them moot.
    """

    def __init__(
        self, journal: Journal | None, device: str, inherited: dict[int, str] | None = None
    ) -> None:
        self.journal = journal
        self.entry = Entry(journal.sysroot if journal else "/", device, os.getpid())
        self.entry.blocks.update(inherited or {})
        self.mine: set[int] = set()

    def _save(self) -> None:
        if self.journal is None:
            return
        if self.entry.blocks:
            self.journal.save(self.entry)
        else:
            self.journal.clear()

    def offlining(self, idx: int, zone: str | None) -> None:
        """Record ``idx`` before writing ``offline`` to it."""
        self.entry.blocks[idx] = zone or ""
        self.mine.add(idx)
        self._save()

    def online_again(self, idx: int) -> None:
        """``idx`` is online (the write failed, or it was rolled back)."""
        if self.entry.blocks.pop(idx, None) is not None:
            self._save()
        self.mine.discard(idx)

    def done(self, gone: set[int] | None = None) -> None:
        """Nothing of this run is left to restore (``gone``: blocks removed with it)."""
        for idx in self.mine | (gone or set()):
            self.entry.blocks.pop(idx, None)
        self.mine.clear()
        self._save()


__all__ = [
    "Entry",
    "Journal",
    "JournalError",
    "RunJournal",
    "journal_dir",
    "pid_alive",
    "real_sysroot",
]
