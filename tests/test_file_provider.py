"""The file provider: conformance, crash safety, processes, paths and permissions."""

from __future__ import annotations

import multiprocessing
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from websession import ConfigurationError, Manager
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
    provider = FileProvider(sys.argv[1], fsync=True)
    sid = sys.argv[2]
    version = provider.read(sid).version
    print("ready", flush=True)
    while True:
        blob = bytes([(version + 1) % 251]) * 200_000
        assert provider.update(sid, Record(blob, time.time() + 3600, version + 1), version)
        version += 1
""")


def test_a_crash_mid_write_never_leaves_a_torn_session(tmp_path: Path) -> None:
    root = tmp_path / "s"
    provider = FileProvider(root)
    sid = "cd" * 16
    provider.create(sid, Record(bytes([1 % 251]) * 200_000, time.time() + 3600, 1))
    for delay in (0.05, 0.11, 0.17, 0.23):
        with subprocess.Popen([sys.executable, "-c", WRITER, str(root), sid],
                              stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        record = provider.read(sid)
        assert record is not None
        assert len(record.payload) == 200_000
        assert record.payload == bytes([record.version % 251]) * 200_000
    provider.tmp_grace = 0.0
    provider.gc()
    assert [p.name for p in (root / sid[-2:]).iterdir() if p.name != ".lock"] == [sid]


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
