"""Operating sessions: listing, counters (``Manager.stats``), events, Prometheus export."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import pytest
from bench.ops_bench import drop_table
from prometheus_client import CollectorRegistry, generate_latest
from tests.servers import require_server

from websession import Manager, StoreUnavailableError
from websession.exceptions import UnsupportedOperationError
from websession.metrics import register_prometheus
from websession.providers.base import BaseProvider, Record
from websession.providers.memory import MemoryProvider

KEY = "0123456789abcdef0123456789abcdef"


def request(manager: Manager, cookie: str | None = None, **values: Any) -> str:
    """One WSGI request setting ``values``; the session ID it leaves in the cookie."""
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET"}
    if cookie:
        environ["HTTP_COOKIE"] = f"{manager.config.cookie_name}={cookie}"
    session = manager.session_start(environ)
    for key, value in values.items():
        session[key] = value
    session.session_release([])
    return str(session.session_id())


class NoScan(BaseProvider):
    """A third-party provider that implements only the seven primitives."""

    def __init__(self) -> None:
        self.inner = MemoryProvider()

    def read(self, sid: str) -> Record | None:
        return self.inner.read(sid)

    def create(self, sid: str, record: Record) -> bool:
        return self.inner.create(sid, record)

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        return self.inner.update(sid, record, expected_version)

    def touch(self, sid: str, expires_at: float) -> bool:
        return self.inner.touch(sid, expires_at)

    def delete(self, sid: str) -> None:
        self.inner.delete(sid)

    def count(self) -> int:
        return self.inner.count()

    def gc(self) -> int:
        return self.inner.gc()


def test_listing_a_provider_without_scan_says_so() -> None:
    manager = Manager(NoScan())
    assert not manager.can_list
    with pytest.raises(UnsupportedOperationError, match="NoScan provider cannot list"):
        list(manager.iter_sessions())


def test_cookie_sessions_cannot_be_listed() -> None:
    manager = Manager("cookie", {"providerConfig": {"securityKey": KEY}})
    assert not manager.can_list
    with pytest.raises(UnsupportedOperationError, match="kept in the cookie cannot be listed"):
        list(manager.iter_sessions())

    async def walk() -> None:
        async for _ in manager.aiter_sessions():
            pass

    with pytest.raises(UnsupportedOperationError):
        asyncio.run(walk())


def test_stats_count_what_the_engine_did() -> None:
    manager = Manager("memory")
    sid = request(manager, user="ann")
    request(manager, sid, n=1)
    request(manager, sid)  # a read-only request: a load, no write
    session = manager.get_session_store(sid)
    session.load()
    session.regenerate_id()
    session.session_release([])
    manager.get_session_store(session.session_id()).destroy()
    stats = manager.stats()
    assert stats["created"] == 1
    assert stats["saves"] == 1
    assert stats["loads"] == 3  # a request without a cookie reads nothing
    assert stats["regenerated"] == 1
    assert stats["destroyed"] == 1
    assert stats["conflicts"] == stats["retries"] == stats["unavailable"] == 0
    assert stats["writes"] == 3  # the create, the update, the regeneration
    assert stats["load_seconds"] > 0 and stats["write_seconds"] > 0


def test_stats_count_conflicts_and_retries() -> None:
    manager = Manager("memory")
    sid = request(manager, a=1)
    first, second = manager.get_session_store(sid), manager.get_session_store(sid)
    first.load()
    second.load()
    first["b"] = 2
    first.session_release([])
    second["c"] = 3
    second.session_release([])  # lost the compare-and-set, re-applied, saved
    stats = manager.stats()
    assert (stats["conflicts"], stats["retries"], stats["saves"]) == (1, 1, 2)
    info = manager.inspect(sid)
    assert info is not None and info.data == {"a": 1, "b": 2, "c": 3}


def test_stats_count_expired_and_unavailable(tmp_path: Any) -> None:
    manager = Manager("memory", {"maxLifetime": 1})
    request(manager, x=1)
    time.sleep(1.1)
    assert manager.gc() == 1
    assert manager.stats()["expired"] == 1

    (tmp_path / "s.db").mkdir()  # a directory where the database should be: unopenable
    broken = Manager("sqlite", {"providerConfig": str(tmp_path / "s.db")})
    with pytest.raises(StoreUnavailableError):
        request(broken, "0" * 32)
    assert broken.stats()["unavailable"] == 1


def test_events_fire_with_ids_and_counts() -> None:
    manager = Manager("memory", {"maxLifetime": 1})
    seen: list[tuple[Any, ...]] = []
    for event in ("created", "regenerated", "destroyed", "expired"):
        manager.on(event, lambda *args, event=event: seen.append((event, *args)))
    sid = request(manager, user="ann")
    session = manager.get_session_store(sid)
    session.load()
    new = session.regenerate_id()
    session.session_release([])
    manager.get_session_store(new).destroy()
    request(manager, other=1)
    time.sleep(1.1)
    manager.gc()
    assert seen[:3] == [("created", sid), ("regenerated", new, sid), ("destroyed", new)]
    assert seen[3][0] == "created"
    assert seen[4] == ("expired", 1, [seen[3][1]])


_SQL_SERVERS = {"postgresql": ("PostgreSQL", 5432, "postgresql://postgres@127.0.0.1:5432/test"),
                "mysql": ("MariaDB", 3306, "root:@tcp(127.0.0.1:3306)/test")}


@pytest.mark.parametrize("provider", ["memory", "file", "sqlite", "postgresql", "mysql",
                                      "no-scan"])
def test_expired_event_names_the_ids_where_the_provider_reports_them(
        provider: str, tmp_path: Any) -> None:
    config: dict[str, Any] = {"maxLifetime": 1}
    if provider in ("file", "sqlite"):
        config["providerConfig"] = str(tmp_path / "store")
    if provider in _SQL_SERVERS:
        name, port, dsn = _SQL_SERVERS[provider]
        require_server(name, "127.0.0.1", port)
        table = f"ops_test_{uuid.uuid4().hex[:10]}"
        config["providerConfig"] = {"dsn": dsn, "table": table}
    try:
        _expired_ids(Manager(NoScan() if provider == "no-scan" else provider, config),
                     provider)
    finally:
        if provider in _SQL_SERVERS:
            drop_table(provider, table)


def _expired_ids(manager: Manager, provider: str) -> None:
    expired: list[tuple[int, list[str] | None]] = []
    manager.on("expired", lambda count, ids: expired.append((count, ids)))
    doomed = {request(manager, i=i) for i in range(3)}
    time.sleep(1.1)
    keep = request(manager, i=9)
    assert manager.gc() == 3
    assert manager.inspect(keep) is not None
    [(count, ids)] = expired
    assert count == 3
    if provider == "no-scan":
        assert ids is None  # a provider without gc_ids(): the count only
    else:
        assert ids is not None and set(ids) == doomed
    manager.close()


def test_a_failing_callback_is_logged_and_the_request_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    manager = Manager("memory")

    def broken(sid: str) -> None:
        raise RuntimeError("audit log down")

    manager.on("created", broken)
    with caplog.at_level(logging.ERROR, logger="websession"):
        sid = request(manager, user="ann")
    assert manager.inspect(sid) is not None
    assert "created callback" in caplog.text and "audit log down" in caplog.text
    manager.off("created", broken)
    with pytest.raises(ValueError, match="unknown session event"):
        manager.on("creatd", broken)


async def test_async_callbacks_run_on_the_loop() -> None:
    manager = Manager("memory")
    done = asyncio.Event()
    got: list[str] = []

    async def audit(sid: str) -> None:
        got.append(sid)
        done.set()

    manager.on("created", audit)
    session = manager.session_start({"type": "http", "headers": []})
    await session.aload()
    session["user"] = "ann"
    await session.asession_release([])
    await asyncio.wait_for(done.wait(), 1)
    assert got == [session.session_id()]


def test_prometheus_exports_the_counters() -> None:
    manager = Manager("memory")
    registry = CollectorRegistry()
    register_prometheus(manager, registry, name="web")
    request(manager, user="ann")
    text = generate_latest(registry).decode()
    assert 'websession_sessions_created_total{manager="web"} 1.0' in text
    assert 'websession_store_write_seconds_count{manager="web"} 1.0' in text


async def test_amigrate_copies_between_stores(tmp_path: Any) -> None:
    source = Manager("memory")
    target = Manager("sqlite", {"providerConfig": str(tmp_path / "to.db")})
    for i in range(7):
        session = source.get_session_store(None)
        session.bind_user("ann" if i < 2 else "bob")
        session["i"] = i
        session.session_release([])
    batches = [batch async for batch in source.amigrate(target, batch=3)]
    assert sum(read for read, _, _ in batches) == sum(made for _, made, _ in batches) == 7
    assert batches[-1][2] is None
    assert sorted(info.data["i"] for info in await target.asessions_of("ann")) == [0, 1]
    with pytest.raises(UnsupportedOperationError, match="keeps no store"):
        next(source.migrate(Manager("cookie", {"providerConfig": {"securityKey": KEY}})))
