"""The file provider: conformance, crash safety, processes, paths and permissions."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import random
import signal
import stat
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from websession import ConfigurationError, Manager, StoreUnavailableError
from websession.providers.base import Record
from websession.providers.file import FileProvider
from websession.testing import ProviderConformance, ScanConformance


class TestFileConformance(ProviderConformance, ScanConformance):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> FileProvider:
        return FileProvider(tmp_path / "sessions", fsync=False)


def env(cookie: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"REQUEST_METHOD": "GET"}
    if cookie:
        e["HTTP_COOKIE"] = f"gosessionid={cookie}"
    return e


def new_session(manager: Manager, **values: Any) -> str:
    session = manager.session_start(env())
    session.update(values)
    session.session_release([])
    return session.session_id()


def test_seed_config_string_is_the_directory(tmp_path: Path) -> None:
    directory = tmp_path / "tmp"
    manager = Manager("file", '{"cookieName":"gosessionid","gclifetime":3600,'
                              f'"ProviderConfig":"{directory}"}}')
    sid = new_session(manager, user="ann")
    assert (directory / sid[-2:] / sid).is_file()
    assert manager.get_session_store(sid)["user"] == "ann"


def test_object_config_and_errors(tmp_path: Path) -> None:
    manager = Manager("file", {"ProviderConfig": {"path": str(tmp_path / "s"), "fsync": False}})
    assert isinstance(manager.provider, FileProvider)
    assert manager.provider.fsync is False
    (tmp_path / "plain").write_text("not a directory")
    with pytest.raises(ConfigurationError, match="providerConfig"):
        Manager("file", {"ProviderConfig": str(tmp_path / "plain")})
    with pytest.raises(ConfigurationError, match="directory"):
        Manager("file", {"ProviderConfig": ""})
    with pytest.raises(ConfigurationError, match="fsynk"):
        Manager("file", {"ProviderConfig": {"path": str(tmp_path), "fsynk": True}})


def test_permissions_are_private(tmp_path: Path) -> None:
    root = tmp_path / "sessions"
    manager = Manager(FileProvider(root))
    sid = new_session(manager, user="ann")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / sid[-2:]).stat().st_mode) == 0o700
    assert stat.S_IMODE((root / sid[-2:] / sid).stat().st_mode) == 0o600


@pytest.mark.parametrize("sid", ["../../etc/passwd", "../x", "a/b", ".hidden", "x", "", "a\0b"])
def test_ids_can_never_name_a_path_outside(tmp_path: Path, sid: str) -> None:
    provider = FileProvider(tmp_path / "s")
    later = time.time() + 60
    with pytest.raises(ValueError, match="plain name"):
        provider.create(sid, Record(b"x", later, 1))
    with pytest.raises(ValueError, match="plain name"):
        provider.read(sid)
    manager = Manager(provider)  # through the manager, such an ID never reaches it
    session = manager.session_start(env(sid))
    session["k"] = "v"
    session.session_release([])
    assert session.session_id() != sid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]


def test_symlinks_are_never_followed(tmp_path: Path) -> None:
    root = tmp_path / "s"
    provider = FileProvider(root, fsync=False)
    manager = Manager(provider)
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    sid = manager.engine.ids.new()
    shard = root / sid[-2:]
    shard.mkdir(mode=0o700)
    (shard / sid).symlink_to(victim)
    assert provider.read(sid) is None
    assert provider.update(sid, Record(b"x", time.time() + 60, 2), 1) is False
    assert provider.touch(sid, time.time() + 60) is False
    assert victim.read_bytes() == b"precious"
    # A symlinked shard directory is refused too.
    other = manager.engine.ids.new()
    while other[-2:] == sid[-2:]:
        other = manager.engine.ids.new()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / other[-2:]).symlink_to(outside, target_is_directory=True)
    with pytest.raises(OSError):  # noqa: PT011 - ELOOP/ENOTDIR, depending on the call
        provider.create(other, Record(b"x", time.time() + 60, 1))
    assert list(outside.iterdir()) == []


def test_gc_and_count_decide_by_stat_alone(tmp_path: Path) -> None:
    provider = FileProvider(tmp_path / "s", fsync=False)
    now = time.time()
    for i in range(200):
        provider.create(f"{i:032x}", Record(b"live", now + 3600, 1))
    for i in range(200, 300):
        provider.create(f"{i:032x}", Record(b"dead", now + 0.05, 1))
    time.sleep(0.1)
    # Unreadable contents prove GC does not open the files it removes.
    for path in (tmp_path / "s").glob("*/*"):
        if not path.name.startswith(".") and path.read_bytes().endswith(b"dead"):
            path.chmod(0)
    assert provider.count() == 200
    assert provider.gc() == 100
    assert provider.count() == 200
    assert provider.gc() == 0


def test_gc_removes_orphaned_temporary_files(tmp_path: Path) -> None:
    provider = FileProvider(tmp_path / "s", fsync=False)
    sid = "ab" * 16
    provider.create(sid, Record(b"x", time.time() + 3600, 1))
    orphan = tmp_path / "s" / sid[-2:] / f".tmp-{sid}-dead"
    orphan.write_bytes(b"half")
    provider.tmp_grace = 0.0
    time.sleep(0.01)
    provider.gc()
    assert not orphan.exists()
    assert provider.read(sid) is not None


WORKER = textwrap.dedent("""
    import sys
    from websession import Manager
    from websession.providers.file import FileProvider
    root, sid, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    manager = Manager(FileProvider(root, fsync=False))
    for i in range(count):
        session = manager.session_start({"HTTP_COOKIE": "gosessionid=" + sid})
        session[f"w{worker}-{i}"] = i
        session.session_release([])
""")


def test_worker_processes_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "s"
    manager = Manager(FileProvider(root, fsync=False))
    sid = new_session(manager, base=0)
    workers, each = 6, 15
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(root), sid, str(w), str(each)])
        for w in range(workers)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0] * workers
    keys = set(manager.get_session_store(sid))
    assert keys == {"base"} | {f"w{w}-{i}" for w in range(workers) for i in range(each)}


WRITER = textwrap.dedent("""
    import sys, time
    from websession.providers.base import Record
    from websession.providers.file import FileProvider
    provider = FileProvider(sys.argv[1], fsync=sys.argv[3] == "fsync")
    sid, sizes = sys.argv[2], [int(n) for n in sys.argv[4].split(",")]
    version = provider.read(sid).version
    print("ready", flush=True)
    while True:
        version += 1
        blob = bytes([version % 251]) * sizes[version % len(sizes)]
        assert provider.update(sid, Record(blob, time.time() + 3600, version), version - 1)
""")


@pytest.mark.parametrize(("sizes", "fsync"), [
    ((200_000,), "fsync"),  # the same size: every write in place
    ((200_000, 3_000, 450_000, 10), "fsync"),  # growing and shrinking: slots move
    ((1_000, 700_000, 90_000), "no-fsync"),
])
def test_a_crash_mid_write_never_leaves_a_torn_session(
    tmp_path: Path, sizes: tuple[int, ...], fsync: str
) -> None:
    root = tmp_path / "s"
    provider = FileProvider(root)
    sid = "cd" * 16
    provider.create(sid, Record(bytes([1 % 251]) * sizes[1 % len(sizes)], time.time() + 3600, 1))
    seen = set()
    for delay in (0.05, 0.11, 0.17, 0.23, 0.29):
        with subprocess.Popen([sys.executable, "-c", WRITER, str(root), sid, fsync,
                               ",".join(map(str, sizes))],
                              stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        record = provider.read(sid)
        assert record is not None
        assert len(record.payload) == sizes[record.version % len(sizes)]
        assert record.payload == bytes([record.version % 251]) * len(record.payload)
        seen.add(record.version)
    assert len(seen) > 1  # the writers really wrote
    provider.tmp_grace = 0.0
    provider.gc()
    assert [p.name for p in (root / sid[-2:]).iterdir() if p.name != ".lock"] == [sid]


def test_lock_free_reads_during_writes_see_whole_records(tmp_path: Path) -> None:
    root = tmp_path / "s"
    provider = FileProvider(root, fsync=False)
    sid, sizes = "cd" * 16, (300, 9_000, 40, 120_000)
    provider.create(sid, Record(bytes([1]) * sizes[1], time.time() + 3600, 1))
    with subprocess.Popen([sys.executable, "-c", WRITER, str(root), sid, "no-fsync",
                           ",".join(map(str, sizes))], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        try:
            versions = []
            for _ in range(3_000):
                record = provider.read(sid)  # never absent, never torn, never stale-dated
                assert record is not None and record.expires_at > time.time() + 3000
                assert record.payload == bytes([record.version % 251]) * sizes[
                    record.version % len(sizes)]
                versions.append(record.version)
        finally:
            proc.kill()
    assert versions == sorted(versions) and len(set(versions)) > 10  # it raced real writes


def _spawned_gc(root: str) -> int:
    return FileProvider(root).gc()


def test_async_mode_runs_file_io_off_the_event_loop(tmp_path: Path) -> None:
    import asyncio
    import threading

    provider = FileProvider(tmp_path / "s", fsync=False)
    seen: list[str] = []
    original = provider.read

    def spying_read(sid: str) -> Record | None:
        seen.append(threading.current_thread().name)
        return original(sid)

    provider.read = spying_read  # type: ignore[method-assign]
    manager = Manager(provider)
    sid = new_session(manager, user="ann")

    async def request() -> None:
        scope = {"type": "http", "headers": [(b"cookie", f"gosessionid={sid}".encode())]}
        session = manager.session_start(scope)
        await session.aload()
        assert session["user"] == "ann"

    asyncio.run(request())
    assert seen and seen[-1] != threading.main_thread().name


def test_gc_runs_in_another_process_too(tmp_path: Path) -> None:
    root = tmp_path / "s"
    provider = FileProvider(root, fsync=False)
    provider.create("ef" * 16, Record(b"x", time.time() + 0.01, 1))
    time.sleep(0.05)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_spawned_gc, (str(root),)) == 1
    assert os.listdir(root / "ef") == [".lock"]


def test_a_forked_worker_opens_its_own_descriptors(tmp_path: Path) -> None:
    provider = FileProvider(tmp_path / "s", fsync=False)
    provider.create("ab" * 16, Record(b"x", time.time() + 60, 1))
    assert provider._shards_open  # the parent has the subdirectory open
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        fresh = not provider._shards_open
        ok = provider.update("ab" * 16, Record(b"y", time.time() + 60, 2), 1)
        os._exit(0 if fresh and ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    record = provider.read("ab" * 16)
    assert record is not None
    assert record.payload == b"y"


# -- the slot layout: no rename, torn writes, legacy files, deadlines -------------------

def contents(provider: FileProvider, sid: str) -> tuple[bytes, int] | None:
    """A session's payload and version, or ``None``."""
    record = provider.read(sid)
    return None if record is None else (record.payload, record.version)


def slot_offsets(path: Path) -> tuple[int, int]:
    """The offsets of slot 0 and slot 1 from a session file's header."""
    magic, first, second = struct.unpack_from(">8sQQ", path.read_bytes())
    assert magic == b"WSslot1\n"
    return first, second


def overwrite(path: Path, data: bytes) -> None:
    """Put ``data`` in the session file in place, as a crashed writer would leave it."""
    with path.open("r+b") as f:
        f.write(data)
        f.truncate(len(data))


@pytest.fixture
def slot_file(tmp_path: Path) -> tuple[FileProvider, str, Path]:
    """A provider, a session ID, and where that session's file goes."""
    sid = "ab" * 16
    return FileProvider(tmp_path / "s", fsync=False), sid, tmp_path / "s" / sid[-2:] / sid


def test_writes_rewrite_the_file_in_place_and_never_rename(
    slot_file: tuple[FileProvider, str, Path],
) -> None:
    provider, sid, path = slot_file
    assert provider.create(sid, Record(b"v1", time.time() + 60, 1))
    inode = path.stat().st_ino
    names = set(os.listdir(path.parent))
    sizes = random.Random(7)
    for version in range(2, 40):
        payload = bytes([version]) * (70_000 if version == 39 else
                                      sizes.choice([5, 700, 5_000, 70_000]))
        assert provider.update(sid, Record(payload, time.time() + 60, version), version - 1)
        assert path.stat().st_ino == inode  # the same file: nothing renamed over it
        assert set(os.listdir(path.parent)) == names  # no temporary file either
        record = provider.read(sid)
        assert record is not None and (record.payload, record.version) == (payload, version)
    assert path.stat().st_size < 3 * 70_100  # two slots, not a growing log
    for version in range(40, 44):  # the record shrinks: so does the file
        assert provider.update(sid, Record(b"small", time.time() + 60, version), version - 1)
    assert path.stat().st_size < 4_096


def _torn_states(before: bytes, after: bytes) -> Iterator[bytes]:
    """Every state a write from ``before`` to ``after`` can be cut off in: the first ``k``
    changed bytes written (in file order, as ``pwrite`` copies), then a random subset of
    512-byte sectors written (as a disk may persist them before a power cut)."""
    changed = [i for i in range(max(len(before), len(after)))
               if i >= len(before) or i >= len(after) or before[i] != after[i]]
    cuts = sorted({*range(0, len(changed), max(1, len(changed) // 300)),
                   *range(0, min(70, len(changed))), len(changed)})
    for k in cuts:
        state = bytearray(before.ljust(len(after), b"\0") if len(after) > len(before)
                          else before)
        for i in changed[:k]:
            state[i] = after[i]
        yield bytes(state[: max(len(before), changed[k - 1] + 1 if k else 0)])
    generator = random.Random(12)
    for _ in range(200):
        state = bytearray(before.ljust(len(after), b"\0"))
        for sector in range(0, len(after), 512):
            if generator.random() < 0.5:
                state[sector : sector + 512] = after[sector : sector + 512]
        yield bytes(state)


@pytest.mark.parametrize(("old_size", "new_size"), [
    (300, 300),  # in place
    (300, 5_000),  # grows past the other slot: moves, and the offset is rewritten
    (5_000, 40),  # shrinks: back to the front
])
def test_a_torn_write_leaves_the_previous_record(
    slot_file: tuple[FileProvider, str, Path], old_size: int, new_size: int
) -> None:
    provider, sid, path = slot_file
    deadline = time.time() + 600
    provider.create(sid, Record(b"a" * 1_000, deadline, 1))
    provider.update(sid, Record(b"b" * old_size, deadline, 2), 1)
    before = path.read_bytes()
    provider.update(sid, Record(b"c" * new_size, deadline, 3), 2)
    after = path.read_bytes()
    outcomes = set()
    for state in _torn_states(before, after):
        overwrite(path, state)  # also stamps mtime and ctime alike, as a killed writer
        record = provider.read(sid)
        assert record is not None
        assert (record.payload, record.version) in {(b"b" * old_size, 2),
                                                    (b"c" * new_size, 3)}
        assert abs(record.expires_at - deadline) < 1e-3  # from the slot: mtime was lost
        outcomes.add(record.version)
        # Whatever stood, the next write at its version succeeds and reads back.
        assert provider.update(sid, Record(b"d", deadline, 9), record.version)
        assert contents(provider, sid) == (b"d", 9)
    assert outcomes == {2, 3}


def test_a_scribbled_or_truncated_slot_falls_back_to_the_other(
    slot_file: tuple[FileProvider, str, Path],
) -> None:
    provider, sid, path = slot_file
    later = time.time() + 600
    provider.create(sid, Record(b"first" * 100, later, 1))
    provider.update(sid, Record(b"second" * 100, later, 2), 1)
    newest = slot_offsets(path)[1]  # the second write went to slot 1
    good = path.read_bytes()

    damages: list[Callable[[bytes], bytes]] = [
        lambda b: b[: newest + 40],  # truncated inside the newest slot's payload
        lambda b: b[: newest + 10],  # ... inside its header
        lambda b: b[:newest] + b"\xff" * 32 + b[newest + 32 :],  # its header scribbled
        lambda b: b[: newest + 100] + b"X" + b[newest + 101 :],  # one payload byte
        lambda b: b[: newest + 7] + bytes([b[newest + 7] ^ 1]) + b[newest + 8 :],  # seq
    ]
    for damage in damages:
        overwrite(path, damage(good))
        record = provider.read(sid)
        assert record is not None and (record.payload, record.version) == (b"first" * 100, 1)
    # Both slots damaged: no session (never an error, never garbage).
    first = slot_offsets(path)[0]
    broken = bytearray(good)
    broken[first + 50] ^= 0xFF
    broken[newest + 50] ^= 0xFF
    overwrite(path, bytes(broken))
    assert provider.read(sid) is None
    assert provider.update(sid, Record(b"x", later, 3), 2) is False
    assert provider.create(sid, Record(b"fresh", later, 1))  # a dead file is replaced
    assert contents(provider, sid) == (b"fresh", 1)


def test_a_writer_killed_before_setting_the_deadline_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "s"
    provider = FileProvider(root, fsync=False)
    live, dead = "ab" * 16, "cb" * 16
    later = time.time() + 600
    provider.create(live, Record(b"live", later, 1))
    provider.create(dead, Record(b"dead", time.time() + 0.05, 1))
    time.sleep(0.1)
    for sid in (live, dead):  # a write that stamps mtime = ctime = now, then nothing
        path = root / sid[-2:] / sid
        overwrite(path, path.read_bytes())
        info = path.stat()
        assert info.st_mtime_ns == info.st_ctime_ns
    assert provider.count() == 2  # stat alone cannot tell: both counted
    assert provider.gc_ids() == [dead]  # GC reads these two only, and removes the dead
    info = (root / live[-2:] / live).stat()
    assert abs(info.st_mtime - later) < 1e-3  # the deadline restored from the slot
    assert provider.count() == 1
    record = provider.read(live)
    assert record is not None and record.payload == b"live"
    assert provider.touch(live, later + 60)


def test_files_of_the_earlier_layout_are_read_and_migrated_on_write(tmp_path: Path) -> None:
    root = tmp_path / "s"
    provider = FileProvider(root, fsync=False)
    manager = Manager(provider)
    sid = new_session(manager, user="ann")
    current = provider.read(sid)
    assert current is not None
    path = root / sid[-2:] / sid
    # What the rename-based provider wrote: the version, then the payload; mtime = deadline.
    legacy = root / sid[-2:] / "legacy"
    legacy.write_bytes(struct.pack(">Q", current.version) + current.payload)
    os.utime(legacy, ns=(int(current.expires_at * 1e9),) * 2)
    os.rename(legacy, path)
    session = manager.session_start(env(sid))
    assert session["user"] == "ann"
    session["n"] = 1
    session.session_release([])
    assert path.read_bytes()[:8] == b"WSslot1\n"  # the first write converted it
    assert dict(manager.get_session_store(sid)) == {"user": "ann", "n": 1}
    assert [p for p in os.listdir(path.parent) if p.startswith(".tmp")] == []
    # An expired legacy file is no session, and create replaces it.
    other = "ef" * 16
    (root / other[-2:]).mkdir(exist_ok=True, mode=0o700)
    old = root / other[-2:] / other
    old.write_bytes(struct.pack(">Q", 7) + b"old")
    os.utime(old, (1, 1))
    assert provider.read(other) is None
    assert provider.create(other, Record(b"new", time.time() + 60, 1))
    assert contents(provider, other) == (b"new", 1)


# -- bounded lock waits ------------------------------------------------------------------

def test_waiting_for_a_held_lock_is_bounded_by_the_timeout(tmp_path: Path) -> None:
    root = tmp_path / "s"
    manager = Manager("file", {"ProviderConfig": {"path": str(root), "fsync": False,
                                                  "timeout": "300ms"}})
    provider = manager.provider
    assert isinstance(provider, FileProvider) and provider.timeout == 0.3
    sid = new_session(manager, user="ann")
    # Another process (a stuck worker) holds the subdirectory's lock.
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent("""
            import fcntl, os, sys, time
            fd = os.open(sys.argv[1], os.O_RDWR)
            fcntl.flock(fd, fcntl.LOCK_EX)
            print("held", flush=True)
            time.sleep(60)
        """), str(root / sid[-2:] / ".lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        session = manager.session_start(env(sid))
        assert session["user"] == "ann"  # reads need no lock
        session["user"] = "bob"
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="timeout"):
            session.session_release([])
        waited = time.monotonic() - started
        assert 0.3 <= waited < 3.0  # it waited for the lock, and then gave up
        # Other threads of this process are bounded too, not queued behind each other.
        errors: list[BaseException] = []

        def save() -> None:
            try:
                provider.touch(sid, time.time() + 60)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=save) for _ in range(4)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 4 and all(isinstance(e, StoreUnavailableError) for e in errors)
        assert time.monotonic() - started < 3.0
    finally:
        holder.kill()
        holder.communicate()
    session = manager.session_start(env(sid))  # the holder gone, saves work again
    session["user"] = "bob"
    session.session_release([])
    assert manager.get_session_store(sid)["user"] == "bob"


def test_a_lock_held_by_this_process_is_waited_for_then_taken(tmp_path: Path) -> None:
    provider = FileProvider(tmp_path / "s", fsync=False, timeout=5)
    sid = "ab" * 16
    provider.create(sid, Record(b"x", time.time() + 60, 1))
    lock = os.open(tmp_path / "s" / "ab" / ".lock", os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)
    threading.Timer(0.2, fcntl.flock, (lock, fcntl.LOCK_UN)).start()
    assert provider.update(sid, Record(b"y", time.time() + 60, 2), 1)  # waited, then wrote
    os.close(lock)
    assert contents(provider, sid) == (b"y", 2)


@pytest.mark.parametrize("value", [-1, "soon", float("nan"), True])
def test_a_bad_timeout_is_a_configuration_error_naming_it(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        Manager("file", {"ProviderConfig": {"path": str(tmp_path), "timeout": value}})


@pytest.mark.parametrize("key", ["operationTimeout", "operation_timeout", "timeout"])
def test_the_lock_wait_takes_the_name_every_provider_uses(tmp_path: Path, key: str) -> None:
    manager = Manager("file", {"ProviderConfig": {"path": str(tmp_path), key: "250ms"}})
    try:
        provider = manager.provider
        assert isinstance(provider, FileProvider) and provider.timeout == 0.25
    finally:
        manager.close()
