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
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import struct
import time
from collections.abc import Iterator
from typing import Any

from ..exceptions import ConfigurationError
from .base import BaseProvider, Record, parse_options

__all__ = ["FileProvider"]

_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{1,254}")
_VERSION = struct.Struct(">Q")
_LOCK = ".lock"
_TMP = ".tmp-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _ns(timestamp: float) -> int:
    return int(timestamp * 1_000_000_000)


class FileProvider(BaseProvider):
    """Sessions as files; safe across threads and processes. See the module docstring."""

    #: Orphaned temporary files older than this (seconds) are removed by GC.
    tmp_grace = 3600.0

    def __init__(self, path: str | os.PathLike[str] | None = None, *, fsync: bool = True) -> None:
        self.fsync = fsync
        self.path = ""
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

    # -- paths and locks --------------------------------------------------------------

    @staticmethod
    def _shard_of(sid: str) -> str:
        # Defence in depth: the engine only passes IDs of its own shape, but a direct
        # caller must not be able to name "../x" either.
        if not _SAFE_NAME.fullmatch(sid):
            raise ValueError("a session ID used as a file name must be a plain name")
        return sid[-2:]

    @contextlib.contextmanager
    def _shard(self, shard: str, *, create: bool) -> Iterator[int | None]:
        """A subdirectory as a directory descriptor (``None`` if it does not exist and
        ``create`` is false)."""
        root = os.open(self.path, _DIR_FLAGS)
        try:
            try:
                fd = os.open(shard, _DIR_FLAGS, dir_fd=root)
            except FileNotFoundError:
                if not create:
                    yield None
                    return
                with contextlib.suppress(FileExistsError):
                    os.mkdir(shard, 0o700, dir_fd=root)
                fd = os.open(shard, _DIR_FLAGS, dir_fd=root)
        finally:
            os.close(root)
        try:
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked(self, shard: str, *, create: bool) -> Iterator[int | None]:
        """A subdirectory, held under an exclusive lock for a check-then-write."""
        with self._shard(shard, create=create) as fd:
            if fd is None:
                yield None
                return
            lock = os.open(_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                           dir_fd=fd)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(lock)  # closing releases the lock

    # -- file records -----------------------------------------------------------------

    @staticmethod
    def _load(dir_fd: int, name: str, now: float) -> Record | None:
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # a symlink where a session file should be
                return None
            raise
        try:
            info = os.fstat(fd)
            expires_at = info.st_mtime_ns / 1e9
            if expires_at <= now:
                return None
            data = b""
            while chunk := os.read(fd, max(info.st_size, 65536)):
                data += chunk
        finally:
            os.close(fd)
        if len(data) < _VERSION.size:
            return None
        return Record(data[_VERSION.size :], expires_at, _VERSION.unpack_from(data)[0])

    def _write(self, dir_fd: int, name: str, record: Record) -> None:
        tmp = f"{_TMP}{name}-{secrets.token_hex(4)}"
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
        with self._shard(self._shard_of(sid), create=False) as fd:
            return None if fd is None else self._load(fd, sid, time.time())

    def create(self, sid: str, record: Record) -> bool:
        """Write a new session file unless a live one exists."""
        with self._locked(self._shard_of(sid), create=True) as fd:
            assert fd is not None
            if self._load(fd, sid, time.time()) is not None:
                return False
            self._write(fd, sid, record)
            return True

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """Replace the live session file if it is at ``expected_version``."""
        with self._locked(self._shard_of(sid), create=False) as fd:
            if fd is None:
                return False
            current = self._load(fd, sid, time.time())
            if current is None or current.version != expected_version:
                return False
            self._write(fd, sid, record)
            return True

    def touch(self, sid: str, expires_at: float) -> bool:
        """Move the deadline (the file's mtime) of a live session."""
        with self._locked(self._shard_of(sid), create=False) as fd:
            if fd is None:
                return False
            try:
                info = os.stat(sid, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if info.st_mtime_ns / 1e9 <= time.time():
                return False
            deadline = _ns(expires_at)
            os.utime(sid, ns=(deadline, deadline), dir_fd=fd, follow_symlinks=False)
            return True

    def delete(self, sid: str) -> None:
        """Remove the session file."""
        with self._locked(self._shard_of(sid), create=False) as fd:
            if fd is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(sid, dir_fd=fd)

    def _shards(self) -> Iterator[str]:
        with os.scandir(self.path) as entries:
            for entry in entries:
                if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
                    yield entry.name

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
        """Delete expired session files and stale temporary files, deciding by ``stat``."""
        now = time.time()
        now_ns, stale_ns = _ns(now), _ns(now - self.tmp_grace)
        removed = 0
        for shard in self._shards():
            with self._locked(shard, create=False) as fd:
                if fd is None:
                    continue
                with os.scandir(fd) as entries:
                    for entry in entries:
                        if not entry.is_file(follow_symlinks=False) or entry.name == _LOCK:
                            continue
                        info = entry.stat(follow_symlinks=False)
                        temporary = entry.name.startswith(_TMP)
                        # A temporary file's mtime is already its record's deadline; its
                        # inode change time tells how long ago a writer gave up on it.
                        if (info.st_ctime_ns <= stale_ns) if temporary else (
                            info.st_mtime_ns <= now_ns
                        ):
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(entry.name, dir_fd=fd)
                            removed += not temporary
        return removed
