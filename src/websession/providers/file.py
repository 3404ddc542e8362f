"""The file provider: one file per session under a directory, as in the seed.

``Manager("file", {..., "ProviderConfig": "./tmp"})`` — ``ProviderConfig`` is the
directory, or an object ``{"path": "./tmp", "fsync": true, "operationTimeout": "5s"}``.

Layout: ``<dir>/<last two hex digits of the ID>/<ID>``: 256 subdirectories, so ten million
sessions make about 40,000 files per directory. The file's modification time *is* the
record's deadline, so GC and counting decide from ``stat`` alone, without reading any
session.

A session file holds **two slots** and is rewritten in place, never renamed:

* a 512-byte file header: a magic string and the offsets of slot 0 and slot 1;
* each slot, at a 512-byte boundary: a 32-byte header (a sequence number, the record's
  version, its deadline, the payload's length, and a CRC-32 of all that, the payload and
  the slot's own offset), then the payload.

A write fills the *older* slot with ``pwrite`` and gives the next sequence number; the
newer slot is never touched, so a write torn by a crash, a full disk or a kill leaves a
slot whose checksum fails, and the reader takes the newest slot whose checksum holds: the
previous record. A record too big for the older slot's place goes to a place that overlaps
nothing the newer slot holds (the front of the file if it fits there, else past the newer
slot's end), and only then is that slot's 8-byte offset in the file header rewritten; a
crash before it leaves the old offset, pointing at the old (older) slot. No temporary file,
no rename, no directory entry changes per write: the kernel's rename-over was the largest
cost of a write.

Safety:

* Every check-then-write (create only if absent, update only at the expected version,
  touch, delete, GC) holds an exclusive ``flock`` on the subdirectory's lock file, so
  several processes serving the same sessions (gunicorn workers) lose nothing. Waiting
  for it is bounded by ``operationTimeout`` (default 5 s): past it,
  :class:`~websession.StoreUnavailableError`. GC takes it in short batches, so a large
  sweep never holds it for long.
* Reads take no lock: ``fstat``, one ``pread`` of the whole file, ``fstat`` again. If the
  file's times or size moved in between, a write overlapped the read, and it reads again
  under the lock; so does a read that finds a write caught between its data and its
  deadline, or no valid slot. A lock-free read therefore sees the latest complete write,
  never a mix of two, and two reads in a row never go back in time. (Should a write
  nevertheless tear the slot a read copies, the checksum fails and the other slot,
  untouched by that write, stands.)
* The deadline: ``write`` sets the file's mtime (and ctime) to the same instant, and the
  writer then sets the mtime to the deadline. A file whose mtime equals its ctime is
  therefore one whose writer has not finished (or was killed in between): readers, touch
  and GC then take the deadline stored in the newest valid slot, and repair the mtime.
  This relies on the file system stamping mtime and ctime together on a write, as Linux's
  local file systems do; readers confirm under the lock any file whose mtime says expired
  while its slot says live, so a file system that does not cannot lose a live session.
* With ``fsync`` on (the default) a write ends with one ``fsync`` of the file, after its
  deadline is set. Nothing needs ordering before it: until it completes, every state the
  disk may hold has the previous slot intact and its offset either old or new.
* Files are created 0600 and directories 0700; nothing is opened through a symlink
  (``O_NOFOLLOW`` for files and subdirectories, operations relative to directory file
  descriptors); and an ID that is not a plain name is refused before any path is built.
* Only regular files are read: a session file is opened non-blocking and its type checked,
  so a FIFO (or anything else) planted in its place is an absent session, not a hang.
* Disk errors (ENOSPC, EIO, EACCES...) surface as
  :class:`~websession.StoreUnavailableError`; a write that fails leaves the previous
  record as it was.

Files written by earlier versions (an 8-byte version, then the payload) are read as they
are; the first update of one rewrites it in the slot layout through a temporary file and a
rename, once (an in-place conversion could not keep the old record safe). GC removes such
temporary files orphaned by a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import stat
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from ..exceptions import ConfigurationError, StoreUnavailableError
from ._options import parse_duration
from .base import BaseProvider, Page, Record, parse_options

__all__ = ["FileProvider"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{1,254}")
#: The legacy layout's version field.
_VERSION = struct.Struct(">Q")
#: First bytes of a slot file. A legacy file starts with its version's high byte, 0 for
#: any version an engine reaches, so the two layouts cannot be confused.
_MAGIC = b"WSslot1\n"
#: Magic, then the offsets of slot 0 and slot 1 (0: no slot yet).
_FILE_HEADER = struct.Struct(">8sQQ")
_POINTER = struct.Struct(">Q")
#: Sequence number, version, deadline (ns), payload length, then the CRC-32 (last).
_SLOT_FIELDS = struct.Struct(">QQqI")
_SLOT_HEADER = struct.Struct(">QQqII")
#: Slots and the file header start on sector boundaries, so writing one never rewrites a
#: sector holding another.
_ALIGN = 512
#: A file more than twice the size its two slots need, and bigger than this, is cut back.
_SHRINK_ABOVE = 65_536
_LOCK = ".lock"
_TMP = ".tmp-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a session file belongs must not hang the open; it
# changes nothing for a regular file, and anything else is refused after fstat.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_RDWR_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
#: Threads that sweep subdirectories during GC.
GC_THREADS = 4
#: Expired files GC removes per hold of a subdirectory's lock.
GC_BATCH = 64
#: Default bound (seconds) on waiting for a subdirectory's lock.
DEFAULT_TIMEOUT = 5.0


def _ns(timestamp: float) -> int:
    return int(timestamp * 1_000_000_000)


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


class _Slot(NamedTuple):
    """The newest valid slot of a session file, as parsed."""

    slot: int  # 0 or 1
    seq: int
    version: int
    deadline_ns: int
    start: int  # the slot header's offset
    end: int  # one past the payload
    payload: bytes


class _Parsed(NamedTuple):
    """What a session file holds: its slot offsets and newest valid slot (``None`` for a
    legacy file, or one with no valid slot), and for a legacy file its record's fields."""

    offsets: tuple[int, int]
    newest: _Slot | None
    legacy: tuple[int, bytes] | None  # (version, payload)


#: A file with nothing in it yet.
_FRESH = _Parsed((0, 0), None, None)


class _Opened(NamedTuple):
    """A session file open under :meth:`FileProvider._opened`."""

    fd: int
    info: os.stat_result
    parsed: _Parsed
    record: Record | None  # the live record it holds


def _parse(data: bytes) -> _Parsed:
    """Parse a session file's bytes (any prefix of them: what is cut off is not valid)."""
    if data[:8] != _MAGIC:
        if len(data) < _VERSION.size:
            return _FRESH
        return _Parsed((0, 0), None, (_VERSION.unpack_from(data)[0], data[_VERSION.size :]))
    if len(data) < _FILE_HEADER.size:
        return _FRESH
    _, first, second = _FILE_HEADER.unpack_from(data)
    candidates = []
    for index, offset in ((0, first), (1, second)):
        if offset >= _ALIGN and offset + _SLOT_HEADER.size <= len(data):
            candidates.append((_SLOT_HEADER.unpack_from(data, offset), index, offset))
    candidates.sort(reverse=True)  # the highest sequence number first
    view = memoryview(data)
    for (seq, version, deadline, length, crc), index, offset in candidates:
        start = offset + _SLOT_HEADER.size
        end = start + length
        if end > len(data):
            continue
        fields = view[offset : offset + _SLOT_FIELDS.size]
        # Seeding the CRC with the offset: a slot image copied elsewhere is not valid.
        if zlib.crc32(view[start:end], zlib.crc32(fields, offset)) == crc:
            return _Parsed((first, second),
                           _Slot(index, seq, version, deadline, offset, end, data[start:end]),
                           None)
    return _Parsed((first, second), None, None)


def _pack_slot(seq: int, record: Record, offset: int) -> bytes:
    payload = record.payload
    fields = _SLOT_FIELDS.pack(seq, record.version, _ns(record.expires_at), len(payload))
    crc = zlib.crc32(payload, zlib.crc32(fields, offset))
    return fields + struct.pack(">I", crc) + payload


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _unsettled(info: os.stat_result) -> bool:
    """A write stamps mtime and ctime alike; setting the deadline parts them. Equal, the
    file's writer has not set its deadline yet (or was killed before it did)."""
    return info.st_mtime_ns == info.st_ctime_ns


def _stamps(info: os.stat_result) -> tuple[int, int, int]:
    """What every write changes: a write stamps mtime and ctime with the present (and the
    mtime held a deadline in the future), and setting the deadline stamps them again."""
    return info.st_mtime_ns, info.st_ctime_ns, info.st_size


class _Retry(Exception):
    """A lock-free read that cannot decide: read again under the lock."""


class FileProvider(BaseProvider):
    """Sessions as files; safe across threads and processes. See the module docstring."""

    #: Every OS error (a full disk, an I/O error, a permission changed under the server)
    #: means the store cannot serve: the engine raises StoreUnavailableError for it.
    unavailable_errors: tuple[type[BaseException], ...] = (OSError,)

    #: Orphaned temporary files older than this (seconds) are removed by GC.
    tmp_grace = 3600.0

    def __init__(self, path: str | os.PathLike[str] | None = None, *, fsync: bool = True,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self.fsync = fsync
        #: Seconds an operation may wait for a subdirectory's lock before it raises
        #: :class:`~websession.StoreUnavailableError` (``providerConfig`` key ``timeout``).
        self.timeout = timeout
        self.path = ""
        self._forget_descriptors()
        ref = weakref.WeakMethod(self._forget_descriptors)
        os.register_at_fork(after_in_child=lambda: (method := ref()) and method())
        if path is not None:
            self._set_path(os.fspath(path))

    def _set_path(self, path: str) -> None:
        if not path:
            raise ConfigurationError("providerConfig for 'file': give a directory",
                                     key="providerConfig")
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"providerConfig for 'file': cannot use directory {path!r}: {exc}",
                key="providerConfig",
            ) from exc
        if not os.path.isdir(path):
            raise ConfigurationError(
                f"providerConfig for 'file': {path!r} is not a directory", key="providerConfig"
            )
        self.path = os.path.abspath(path)
        self.close()  # descriptors of a previous directory

    def configure(self, config: Any) -> None:
        """A directory (the seed's form), or ``{"path": ..., "fsync": true,
        "operationTimeout": 5}`` (the lock wait's bound: seconds or a Go duration such as
        ``"500ms"``; ``timeout`` is the same key)."""
        if isinstance(config, str) and not config.lstrip().startswith("{"):
            if config or not self.path:
                self._set_path(config)
            return
        options = parse_options(config, {"path": str, "fsync": bool,
                                         "operation_timeout": (int, float, str),
                                         "timeout": (int, float, str)}, provider="file")
        if "path" in options or not self.path:
            self._set_path(options.get("path", ""))
        self.fsync = options.get("fsync", self.fsync)
        # operationTimeout, as every server provider spells it; timeout, its first name.
        for key in ("timeout", "operation_timeout"):
            if key in options:
                self.timeout = parse_duration(options[key], key=key,
                                              where="providerConfig for 'file'")

    # -- directories and locks --------------------------------------------------------

    @staticmethod
    def _shard_of(sid: str) -> str:
        # Defence in depth: the engine only passes IDs of its own shape, but a direct
        # caller must not be able to name "../x" either.
        if not _SAFE_NAME.fullmatch(sid):
            raise ValueError("a session ID used as a file name must be a plain name")
        return sid[-2:]

    def _forget_descriptors(self) -> None:
        # After a fork the child must not share the parent's lock descriptions: flock
        # would then treat both processes as one holder.
        self._shards_open: dict[str, _Shard] = {}
        self._guard = threading.Lock()

    def _shard(self, name: str, *, create: bool) -> _Shard | None:
        """The open subdirectory ``name`` (``None`` if absent and ``create`` is false)."""
        shard = self._shards_open.get(name)
        if shard is not None:
            return shard
        with self._guard:
            shard = self._shards_open.get(name)
            if shard is not None:
                return shard
            root = os.open(self.path, _DIR_FLAGS)
            try:
                try:
                    fd = os.open(name, _DIR_FLAGS, dir_fd=root)
                except FileNotFoundError:
                    if not create:
                        return None
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o700, dir_fd=root)
                    fd = os.open(name, _DIR_FLAGS, dir_fd=root)
            finally:
                os.close(root)
            lock = os.open(_LOCK, _LOCK_FLAGS, 0o600, dir_fd=fd)
            shard = self._shards_open[name] = _Shard(name, fd, lock)
            return shard

    # -- session files ----------------------------------------------------------------

    @staticmethod
    def _open(dir_fd: int, name: str, flags: int) -> tuple[int, os.stat_result] | None:
        """The session file ``name``, open, with its ``stat``; ``None`` if absent, a
        symlink, or not a regular file."""
        try:
            fd = os.open(name, flags, 0o600, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink where a session file should be
                return None
            raise
        try:
            info = os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise
        if not stat.S_ISREG(info.st_mode):  # a FIFO, device or directory: not a session
            os.close(fd)
            return None
        return fd, info

    @staticmethod
    def _contents(fd: int, info: os.stat_result) -> bytes:
        return os.pread(fd, info.st_size, 0) if info.st_size else b""

    @staticmethod
    def _decide(fd: int, info: os.stat_result, parsed: _Parsed, now_ns: int,
                locked: bool) -> Record | None:
        """The live record a parsed file holds, or ``None``. Lock-free (``locked`` false),
        raise :class:`_Retry` where only a read under the lock can tell; under the lock,
        repair the deadline a killed writer left unset."""
        if parsed.legacy is not None:
            version, payload = parsed.legacy
            if info.st_mtime_ns <= now_ns:
                return None
            return Record(payload, info.st_mtime_ns / 1e9, version)
        newest = parsed.newest
        if newest is None:
            # Torn by a crash, or both slots caught mid-write by two successive writers.
            if locked or info.st_size == 0:
                return None
            raise _Retry
        deadline = info.st_mtime_ns
        if _unsettled(info) or deadline <= now_ns < newest.deadline_ns:
            if not locked:
                raise _Retry
            if _unsettled(info):  # its writer was killed before setting the deadline
                deadline = newest.deadline_ns
                os.utime(fd, ns=(deadline, deadline))
        if deadline <= now_ns:
            return None
        return Record(newest.payload, deadline / 1e9, newest.version)

    @contextlib.contextmanager
    def _opened(self, dir_fd: int, name: str, flags: int, *,
                locked: bool) -> Iterator[_Opened | None]:
        """The session file ``name`` open, parsed and decided (see :meth:`_decide`), until
        the block ends; ``None`` if absent or not a regular file."""
        opened = self._open(dir_fd, name, flags)
        if opened is None:
            yield None
            return
        fd, info = opened
        try:
            data = self._contents(fd, info)
            if not locked and _stamps(os.fstat(fd)) != _stamps(info):
                # A write began while this read copied: what it got may mix two writes.
                raise _Retry
            parsed = _parse(data)
            yield _Opened(fd, info, parsed,
                          self._decide(fd, info, parsed, _ns(time.time()), locked))
        finally:
            os.close(fd)

    def _load(self, shard: _Shard, name: str) -> Record | None:
        """The live record in ``name``: lock-free, or under the lock if that cannot tell."""
        try:
            with self._opened(shard.fd, name, _READ_FLAGS, locked=False) as found:
                return None if found is None else found.record
        except _Retry:
            pass
        with shard.locked(self.timeout), \
                self._opened(shard.fd, name, _READ_FLAGS, locked=True) as found:
            return None if found is None else found.record

    def _write_slot(self, fd: int, parsed: _Parsed, record: Record, file_size: int) -> None:
        """Write ``record`` into the slot the newest valid one is not (under the lock)."""
        newest = parsed.newest
        if newest is None:  # a fresh file
            slot = _pack_slot(1, record, _ALIGN)
            header = _FILE_HEADER.pack(_MAGIC, _ALIGN, 0)
            _pwrite_all(fd, header + bytes(_ALIGN - len(header)) + slot, 0)
        else:
            index = 1 - newest.slot
            size = _SLOT_HEADER.size + len(record.payload)
            # The lowest place that overlaps nothing of the newer slot: the front, the
            # slot's own place, or just past the newer slot. Lowest keeps the file compact.
            places = [_aligned(newest.end)]
            if _ALIGN + size <= newest.start:
                places.append(_ALIGN)
            current = parsed.offsets[index]
            if (current >= _ALIGN and not current % _ALIGN  # not one torn by a crash
                    and not (current < newest.end and newest.start < current + size)):
                places.append(current)
            offset = min(places)
            _pwrite_all(fd, _pack_slot(newest.seq + 1, record, offset), offset)
            if offset != current:
                # Only now: until this lands the old offset names the older slot.
                _pwrite_all(fd, _POINTER.pack(offset), 8 + _POINTER.size * index)
            end = max(newest.end, offset + size)
            if file_size > max(2 * end, _SHRINK_ABOVE):
                os.ftruncate(fd, end)  # what a record that shrank left behind
        deadline = _ns(record.expires_at)
        os.utime(fd, ns=(deadline, deadline))
        if self.fsync:
            os.fsync(fd)

    def _migrate(self, dir_fd: int, name: str, record: Record) -> None:
        """Replace a legacy file by a slot file holding ``record``: a temporary file and a
        rename, once, as a legacy file cannot be rewritten in place safely."""
        tmp = _TMP + name
        fd = os.open(tmp, _TMP_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            try:
                self._write_slot(fd, _FRESH, record, 0)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
        if self.fsync:
            os.fsync(dir_fd)  # make the rename itself durable

    # -- the primitives ---------------------------------------------------------------

    def read(self, sid: str) -> Record | None:
        """Read the session file; no lock unless a concurrent write leaves it undecided."""
        shard = self._shard(self._shard_of(sid), create=False)
        return None if shard is None else self._load(shard, sid)

    def create(self, sid: str, record: Record) -> bool:
        """Write a new session file unless a live one exists."""
        shard = self._shard(self._shard_of(sid), create=True)
        assert shard is not None
        with shard.locked(self.timeout):
            with self._opened(shard.fd, sid, _RDWR_FLAGS, locked=True) as found:
                if found is not None:
                    if found.record is not None:
                        return False
                    if found.info.st_size:
                        os.ftruncate(found.fd, 0)  # a dead record: nothing of it may stand
                    self._write_slot(found.fd, _FRESH, record, 0)
                    return True
            # Absent, or something other than a regular file in the way: replace it.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(sid, dir_fd=shard.fd)
            flags = _RDWR_FLAGS | os.O_CREAT | os.O_EXCL
            with self._opened(shard.fd, sid, flags, locked=True) as found:
                if found is None:
                    raise FileNotFoundError(errno.ENOENT, "the session directory went", sid)
                self._write_slot(found.fd, _FRESH, record, 0)
            if self.fsync:
                os.fsync(shard.fd)  # make the new directory entry durable too
            return True

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """Rewrite the live session file's older slot if it is at ``expected_version``."""
        shard = self._shard(self._shard_of(sid), create=False)
        if shard is None:
            return False
        with shard.locked(self.timeout), \
                self._opened(shard.fd, sid, _RDWR_FLAGS, locked=True) as found:
            if found is None or found.record is None or \
                    found.record.version != expected_version:
                return False
            if found.parsed.legacy is not None:
                self._migrate(shard.fd, sid, record)
            else:
                self._write_slot(found.fd, found.parsed, record, found.info.st_size)
            return True

    def touch(self, sid: str, expires_at: float) -> bool:
        """Move the deadline (the file's mtime) of a live session."""
        shard = self._shard(self._shard_of(sid), create=False)
        if shard is None:
            return False
        with shard.locked(self.timeout), \
                self._opened(shard.fd, sid, _READ_FLAGS, locked=True) as found:
            if found is None or found.record is None:
                return False
            deadline = _ns(expires_at)
            os.utime(found.fd, ns=(deadline, deadline))
            return True

    def delete(self, sid: str) -> None:
        """Remove the session file."""
        shard = self._shard(self._shard_of(sid), create=False)
        if shard is not None:
            with shard.locked(self.timeout), contextlib.suppress(FileNotFoundError):
                os.unlink(sid, dir_fd=shard.fd)

    def _shards(self) -> Iterator[str]:
        with os.scandir(self.path) as entries:
            for entry in entries:
                if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
                    yield entry.name

    def scan(self, cursor: str | None, batch: int) -> Page:
        """The shard walk as keyset pagination: subdirectories in name order, session files
        in ID order within each; the cursor is the last ID returned (its subdirectory is
        its last two characters). Each batch lists one subdirectory at a time."""
        shards = sorted(self._shards())
        after = cursor
        start = self._shard_of(cursor) if cursor is not None else ""
        page: list[tuple[str, Record]] = []
        for name in shards:
            if name < start:
                continue
            shard = self._shard(name, create=False)
            if shard is None:
                continue
            with os.scandir(shard.fd) as entries:
                names = sorted(
                    entry.name for entry in entries
                    if entry.name[0] != "." and (name != start or after is None
                                                 or entry.name > after)
                )
            for position, sid in enumerate(names):
                record = self._load(shard, sid)
                if record is not None:
                    page.append((sid, record))
                if len(page) == batch:
                    more = position + 1 < len(names) or name != shards[-1]
                    return Page(page, sid if more else None)
        return Page(page, None)

    def count(self) -> int:
        """Count session files whose deadline has not passed (``stat`` only; a file whose
        writer has not set its deadline yet counts as live)."""
        now_ns = _ns(time.time())
        total = 0
        for shard in self._shards():
            with os.scandir(os.path.join(self.path, shard)) as entries:
                for entry in entries:
                    if entry.name[0] != "." and entry.is_file(follow_symlinks=False):
                        info = entry.stat(follow_symlinks=False)
                        if info.st_mtime_ns > now_ns or _unsettled(info):
                            total += 1
        return total

    def gc(self) -> int:
        """Delete expired session files and stale temporary files, deciding by ``stat``.

        Subdirectories lock independently and ``unlink`` releases the GIL, so a few
        threads sweep them side by side: on a disk, unlinking is most of the cost.
        """
        return len(self.gc_ids())

    def gc_ids(self) -> list[str]:
        """What :meth:`gc` does, returning the removed sessions' IDs (the file names)."""
        now = time.time()
        with ThreadPoolExecutor(max_workers=GC_THREADS) as pool:
            swept = pool.map(lambda name: self._sweep(name, now), list(self._shards()))
            return [sid for ids in swept for sid in ids]

    def _doomed(self, name: str, info: os.stat_result, now_ns: int, stale_ns: int) -> bool:
        """Whether GC removes this entry, by its ``stat``; ``True`` too for a session file
        whose writer was killed before setting its deadline (:meth:`_sweep` decides)."""
        if name.startswith(_TMP):
            # A temporary file's mtime is already its record's deadline; its inode
            # change time tells how long ago a writer gave up on it.
            return info.st_ctime_ns <= stale_ns
        return info.st_mtime_ns <= now_ns or _unsettled(info)

    def _sweep(self, name: str, now: float) -> list[str]:
        shard = self._shard(name, create=False)
        if shard is None:
            return []
        now_ns, stale_ns = _ns(now), _ns(now - self.tmp_grace)
        with os.scandir(shard.fd) as entries:  # a first pass without the lock
            doomed = [
                entry.name for entry in entries
                if entry.name != _LOCK and entry.is_file(follow_symlinks=False)
                and self._doomed(entry.name, entry.stat(follow_symlinks=False), now_ns,
                                 stale_ns)
            ]
        removed: list[str] = []
        for first in range(0, len(doomed), GC_BATCH):
            # Short holds of the lock, each deciding again: requests on this subdirectory
            # wait for one batch at most, and a session written meanwhile stays.
            with shard.locked(self.timeout):
                for entry_name in doomed[first : first + GC_BATCH]:
                    if self._remove_if_dead(shard, entry_name, now_ns, stale_ns):
                        removed.append(entry_name)
        return removed

    def _remove_if_dead(self, shard: _Shard, name: str, now_ns: int, stale_ns: int) -> bool:
        """Unlink ``name`` if it is still doomed (under the lock); whether a session went."""
        try:
            info = os.stat(name, dir_fd=shard.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(info.st_mode) or not self._doomed(name, info, now_ns, stale_ns):
            return False
        if _unsettled(info) and not name.startswith(_TMP):
            # Only here does GC read a file: its deadline is in its newest slot.
            with self._opened(shard.fd, name, _READ_FLAGS, locked=True) as found:
                if found is None or found.record is not None:
                    return False  # live: its mtime now holds its deadline
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=shard.fd)
        return not name.startswith(_TMP)

    def close(self) -> None:
        """Close the cached directory and lock descriptors."""
        with self._guard:
            shards, self._shards_open = self._shards_open, {}
        for shard in shards.values():
            os.close(shard.lock)
            os.close(shard.fd)


class _Shard:
    """An open subdirectory: its descriptor, its lock file, and a mutex for this process's
    threads (``flock`` on a shared descriptor does not exclude threads)."""

    __slots__ = ("fd", "lock", "mutex", "name")

    def __init__(self, name: str, fd: int, lock: int) -> None:
        self.name = name
        self.fd = fd
        self.lock = lock
        self.mutex = threading.Lock()

    @contextlib.contextmanager
    def locked(self, timeout: float) -> Iterator[None]:
        """Hold the subdirectory against every other thread and process, waiting at most
        ``timeout`` seconds for it (then :class:`~websession.StoreUnavailableError`)."""
        deadline = time.monotonic() + timeout
        if not self.mutex.acquire(timeout=timeout):
            raise self._busy(timeout)
        try:
            # flock cannot wait with a timeout: poll, backing off from 50 µs to 5 ms.
            pause = 0.00005
            while True:
                try:
                    fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise self._busy(timeout) from None
                    time.sleep(min(pause, left))
                    pause = min(pause * 2, 0.005)
            try:
                yield
            finally:
                fcntl.flock(self.lock, fcntl.LOCK_UN)
        finally:
            self.mutex.release()

    def _busy(self, timeout: float) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"file store: the lock of subdirectory {self.name!r} stayed held for "
            f"{timeout:g} s (providerConfig 'timeout'); another process may be stuck "
            "holding it"
        )
