"""The file provider: one file per session under a directory, as in the seed.

``Manager("file", {..., "ProviderConfig": "./tmp"})`` — ``ProviderConfig`` is the
directory, or an object ``{"path": "./tmp", "fsync": true}``.

Layout: ``<dir>/<last two hex digits of the ID>/<ID>``: 256 subdirectories, so ten million
sessions make about 40,000 files per directory. A session file holds the record's version
(8 bytes, big-endian) and then its payload; the file's modification time *is* the
record's deadline, so GC and counting decide from ``stat`` alone, without reading any
session.

Safety:

* Writes go to a temporary file in the same directory, are flushed and (by default)
  ``fsync``-ed, get their deadline as mtime, and are renamed over the session file: a
  crash leaves the old session or the new one, never a torn file. Orphaned temporary
  files are removed by GC.
* Every check-then-write (create only if absent, update only at the expected version,
  touch, delete) holds an exclusive ``flock`` on the subdirectory's lock file, so several
  processes serving the same sessions (gunicorn workers) lose nothing. Reads take no lock:
  ``rename`` is atomic.
* Files are created 0600 and directories 0700; nothing is opened through a symlink
  (``O_NOFOLLOW`` for files and subdirectories, operations relative to directory file
  descriptors); and an ID that is not a plain name is refused before any path is built.
* Only regular files are read: a session file is opened non-blocking and its type checked,
  so a FIFO (or anything else) planted in its place is an absent session, not a hang.
* Disk errors (ENOSPC, EIO, EACCES...) surface as
  :class:`~websession.StoreUnavailableError`; a write that fails leaves the previous
  record as it was.
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..exceptions import ConfigurationError
from .base import BaseProvider, Page, Record, parse_options

__all__ = ["FileProvider"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{1,254}")
_VERSION = struct.Struct(">Q")
_LOCK = ".lock"
_TMP = ".tmp-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted where a session file belongs must not hang the open; it
# changes nothing for a regular file, and anything else is refused after fstat.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
#: Threads that sweep subdirectories during GC.
GC_THREADS = 4


def _ns(timestamp: float) -> int:
    return int(timestamp * 1_000_000_000)


class FileProvider(BaseProvider):
    """Sessions as files; safe across threads and processes. See the module docstring."""

    #: Every OS error (a full disk, an I/O error, a permission changed under the server)
    #: means the store cannot serve: the engine raises StoreUnavailableError for it.
    unavailable_errors: tuple[type[BaseException], ...] = (OSError,)

    #: Orphaned temporary files older than this (seconds) are removed by GC.
    tmp_grace = 3600.0

    def __init__(self, path: str | os.PathLike[str] | None = None, *, fsync: bool = True) -> None:
        self.fsync = fsync
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
        """A directory (the seed's form), or ``{"path": ..., "fsync": true}``."""
        if isinstance(config, str) and not config.lstrip().startswith("{"):
            if config or not self.path:
                self._set_path(config)
            return
        options = parse_options(config, {"path": str, "fsync": bool}, provider="file")
        if "path" in options or not self.path:
            self._set_path(options.get("path", ""))
        self.fsync = options.get("fsync", self.fsync)

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
            shard = self._shards_open[name] = _Shard(fd, lock)
            return shard

    # -- file records -----------------------------------------------------------------

    @staticmethod
    def _open(dir_fd: int, name: str, now: float) -> tuple[int, os.stat_result] | None:
        """The live session file ``name``, open, with its ``stat``; ``None`` if absent,
        expired, a symlink, or not a regular file."""
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
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
        if (
            not stat.S_ISREG(info.st_mode)  # a FIFO, device or directory: not a session
            or info.st_mtime_ns <= _ns(now)
            or info.st_size < _VERSION.size
        ):
            os.close(fd)
            return None
        return fd, info

    def _load(self, dir_fd: int, name: str, now: float) -> Record | None:
        opened = self._open(dir_fd, name, now)
        if opened is None:
            return None
        fd, info = opened
        try:
            data = os.read(fd, info.st_size)  # a session file never changes once renamed
        finally:
            os.close(fd)
        return Record(data[_VERSION.size :], info.st_mtime_ns / 1e9, _VERSION.unpack_from(data)[0])

    def _version(self, dir_fd: int, name: str, now: float) -> int | None:
        """The live session's version, from its first 8 bytes only."""
        opened = self._open(dir_fd, name, now)
        if opened is None:
            return None
        fd, _ = opened
        try:
            return int(_VERSION.unpack(os.pread(fd, _VERSION.size, 0))[0])
        finally:
            os.close(fd)

    def _write(self, dir_fd: int, name: str, record: Record) -> None:
        # Called under the shard lock, so one temporary name per session is enough; a
        # leftover from a crashed writer is simply truncated.
        tmp = _TMP + name
        fd = os.open(tmp, _WRITE_FLAGS, 0o600, dir_fd=dir_fd)
        try:
            try:
                view = memoryview(_VERSION.pack(record.version) + record.payload)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
                deadline = _ns(record.expires_at)
                os.utime(fd, ns=(deadline, deadline))
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
        """Read the session file; no lock (renames are atomic)."""
        shard = self._shard(self._shard_of(sid), create=False)
        return None if shard is None else self._load(shard.fd, sid, time.time())

    def create(self, sid: str, record: Record) -> bool:
        """Write a new session file unless a live one exists."""
        shard = self._shard(self._shard_of(sid), create=True)
        assert shard is not None
        with shard.locked():
            opened = self._open(shard.fd, sid, time.time())
            if opened is not None:
                os.close(opened[0])
                return False
            self._write(shard.fd, sid, record)
            return True

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """Replace the live session file if it is at ``expected_version``."""
        shard = self._shard(self._shard_of(sid), create=False)
        if shard is None:
            return False
        with shard.locked():
            if self._version(shard.fd, sid, time.time()) != expected_version:
                return False
            self._write(shard.fd, sid, record)
            return True

    def touch(self, sid: str, expires_at: float) -> bool:
        """Move the deadline (the file's mtime) of a live session."""
        shard = self._shard(self._shard_of(sid), create=False)
        if shard is None:
            return False
        with shard.locked():
            try:
                info = os.stat(sid, dir_fd=shard.fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if info.st_mtime_ns <= _ns(time.time()) or not stat.S_ISREG(info.st_mode):
                return False
            deadline = _ns(expires_at)
            os.utime(sid, ns=(deadline, deadline), dir_fd=shard.fd, follow_symlinks=False)
            return True

    def delete(self, sid: str) -> None:
        """Remove the session file."""
        shard = self._shard(self._shard_of(sid), create=False)
        if shard is not None:
            with shard.locked(), contextlib.suppress(FileNotFoundError):
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
        now = time.time()
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
                record = self._load(shard.fd, sid, now)
                if record is not None:
                    page.append((sid, record))
                if len(page) == batch:
                    more = position + 1 < len(names) or name != shards[-1]
                    return Page(page, sid if more else None)
        return Page(page, None)

    def count(self) -> int:
        """Count session files whose deadline has not passed (``stat`` only)."""
        now_ns = _ns(time.time())
        total = 0
        for shard in self._shards():
            with os.scandir(os.path.join(self.path, shard)) as entries:
                for entry in entries:
                    if entry.name[0] != "." and entry.is_file(follow_symlinks=False) and (
                        entry.stat(follow_symlinks=False).st_mtime_ns > now_ns
                    ):
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

    def _sweep(self, name: str, now: float) -> list[str]:
        shard = self._shard(name, create=False)
        if shard is None:
            return []
        now_ns, stale_ns = _ns(now), _ns(now - self.tmp_grace)
        removed: list[str] = []
        with shard.locked(), os.scandir(shard.fd) as entries:
            for entry in entries:
                if not entry.is_file(follow_symlinks=False) or entry.name == _LOCK:
                    continue
                info = entry.stat(follow_symlinks=False)
                temporary = entry.name.startswith(_TMP)
                # A temporary file's mtime is already its record's deadline; its inode
                # change time tells how long ago a writer gave up on it.
                if (info.st_ctime_ns <= stale_ns) if temporary else (info.st_mtime_ns <= now_ns):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=shard.fd)
                    if not temporary:
                        removed.append(entry.name)
        return removed

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

    __slots__ = ("fd", "lock", "mutex")

    def __init__(self, fd: int, lock: int) -> None:
        self.fd = fd
        self.lock = lock
        self.mutex = threading.Lock()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the subdirectory against every other thread and process."""
        with self.mutex:
            fcntl.flock(self.lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.lock, fcntl.LOCK_UN)
