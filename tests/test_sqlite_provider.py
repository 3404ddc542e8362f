"""The SQLite provider: conformance, processes, schema, GC in batches."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from websession import ConfigurationError, Manager
from websession.providers import sqlite as sqlite_module
from websession.providers.base import Record
from websession.providers.sqlite import SQLiteProvider
from websession.testing import ProviderConformance, ScanConformance, UserConformance


class TestSQLiteConformance(ProviderConformance, ScanConformance, UserConformance):
    @pytest.fixture
    def provider(self, tmp_path: Path) -> SQLiteProvider:
        return SQLiteProvider(str(tmp_path / "sessions.db"))


def env(cookie: str | None = None) -> dict[str, Any]:
    return {"HTTP_COOKIE": f"gosessionid={cookie}"} if cookie else {}


def test_seed_style_config_and_schema(tmp_path: Path) -> None:
    path = tmp_path / "sessions.db"
    with Manager("sqlite", {"gclifetime": 60, "ProviderConfig": str(path)}) as manager:
        session = manager.session_start(env())
        session["user"] = "ann"
        session.session_release([])
        assert manager.get_active_session() == 1
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        columns = [row[1] for row in db.execute("PRAGMA table_info(websession_sessions)")]
        assert columns == ["sid", "payload", "expires_at", "version", "user_id", "bound_at"]
        indexes = [row[1] for row in db.execute("PRAGMA index_list(websession_sessions)")]
        assert "websession_sessions_expires" in indexes
        plan = " ".join(str(row) for row in db.execute(
            "EXPLAIN QUERY PLAN DELETE FROM websession_sessions WHERE sid IN "
            "(SELECT sid FROM websession_sessions WHERE expires_at <= 1 LIMIT 10)"))
        assert "websession_sessions_expires" in plan
    finally:
        db.close()


def test_object_config_and_errors(tmp_path: Path) -> None:
    manager = Manager("sqlite", {"ProviderConfig": {"path": str(tmp_path / "x.db"),
                                                    "table": "my_sessions"}})
    assert isinstance(manager.provider, SQLiteProvider)
    assert manager.provider.table == "my_sessions"
    manager.close()
    with pytest.raises(ConfigurationError, match="table"):
        Manager("sqlite", {"ProviderConfig": {"path": str(tmp_path / "y.db"),
                                              "table": "x; DROP TABLE y"}})
    with pytest.raises(ConfigurationError, match="database file"):
        Manager("sqlite")


def test_gc_deletes_in_batches_and_spares_live_rows(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_module, "GC_BATCH", 100)
    provider = SQLiteProvider(str(tmp_path / "gc.db"))
    provider._check()  # rebuild the statements with the smaller batch
    now = time.time()
    for i in range(1050):
        provider.create(f"{i:032x}", Record(b"dead", now + 0.05, 1))
    for i in range(1050, 1100):
        provider.create(f"{i:032x}", Record(b"live", now + 3600, 1))
    time.sleep(0.1)
    statements: list[str] = []
    provider._db().db.set_trace_callback(statements.append)
    assert provider.gc() == 1050
    assert sum(s.startswith("DELETE") for s in statements) == 11
    assert provider.count() == 50
    provider.close()


WORKER = textwrap.dedent("""
    import sys
    from websession import Manager
    from websession.providers.sqlite import SQLiteProvider
    path, sid, worker, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    with Manager(SQLiteProvider(path)) as manager:
        for i in range(count):
            session = manager.session_start({"HTTP_COOKIE": "gosessionid=" + sid})
            session[f"w{worker}-{i}"] = i
            session.session_release([])
""")


def test_worker_processes_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.db")
    with Manager(SQLiteProvider(path)) as manager:
        session = manager.session_start(env())
        session["base"] = 0
        session.session_release([])
        sid = session.session_id()
        workers, each = 6, 15
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, path, sid, str(w), str(each)])
                 for w in range(workers)]
        assert [p.wait(timeout=120) for p in procs] == [0] * workers
        keys = set(manager.get_session_store(sid))
    assert keys == {"base"} | {f"w{w}-{i}" for w in range(workers) for i in range(each)}


def test_a_locked_database_is_a_store_outage(tmp_path: Path) -> None:
    from websession import StoreUnavailableError

    path = str(tmp_path / "locked.db")
    provider = SQLiteProvider(path, busy_timeout=0.1)
    manager = Manager(provider)
    session = manager.session_start(env())
    session["a"] = 1
    session.session_release([])
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        again = manager.session_start(env(session.session_id()))
        again["b"] = 2
        with pytest.raises(StoreUnavailableError):
            again.session_release([])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    retry = manager.session_start(env(session.session_id()))
    retry["b"] = 2
    retry.session_release([])
    assert dict(manager.get_session_store(session.session_id())) == {"a": 1, "b": 2}
    manager.close()


CLOSER = textwrap.dedent("""
    import sys, threading, time
    from websession.providers.base import Record
    from websession.providers.sqlite import SQLiteProvider
    provider = SQLiteProvider(sys.argv[1])
    stop = time.monotonic() + float(sys.argv[2])
    provider.create("a" * 32, Record(b"x" * 4096, time.time() + 3600, 1))
    done = []

    def work() -> None:
        version = 1
        while time.monotonic() < stop:
            record = Record(b"y" * 4096, time.time() + 3600, version + 1)
            if provider.update("a" * 32, record, version):
                version += 1
            else:
                version = provider.read("a" * 32).version
        done.append(version)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    while time.monotonic() < stop:
        provider.close()  # an application shutting down while requests still run
    for thread in threads:
        thread.join()
    print(len(done), provider.read("a" * 32).version)
""")


def test_close_while_other_threads_run_statements_does_not_crash(tmp_path: Path) -> None:
    # Closing a connection another thread was running a statement on crashed the process
    # (a segmentation fault in CPython's sqlite3, seen in make test).
    result = subprocess.run([sys.executable, "-c", CLOSER, str(tmp_path / "s.db"), "3"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    threads, version = map(int, result.stdout.split())
    assert threads == 4 and version > 1
