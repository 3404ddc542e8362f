"""Tests both SQL providers must pass, written once: each database's test module subclasses
:class:`SQLProviderCases` and says how to reach its server and how to bulk-load rows."""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from typing import Any, ClassVar

import pytest
from tests.db_servers import PrivateServer, check_restart_recovery, private_server

from websession import Manager, MissingDependencyError, UnsupportedOperationError
from websession.providers._pool import Pool
from websession.providers._sql import SQLProvider
from websession.providers.base import Record
from websession.testing import Client

Row = tuple[str, bytes, float, int]


class SQLProviderCases:
    """Shared cases; a subclass sets the class attributes and :meth:`bulk`, and supplies a
    ``table`` fixture (a table name of the test's own, dropped afterwards)."""

    provider_class: ClassVar[type[SQLProvider]]
    registry_name: ClassVar[str]  # the name Manager(...) takes
    module: ClassVar[str]  # the provider's module
    driver: ClassVar[str]  # the driver module whose absence is tested
    extra: ClassVar[str]  # the extra that installs it
    dsn: ClassVar[str]
    server_class: ClassVar[type[PrivateServer]]

    #: The table as the version before per-user sessions made it (``{t}``: its name).
    old_schema: ClassVar[str]

    def bulk(self, table: str, rows: list[Row]) -> None:
        """Insert ``rows`` (sid, payload, expires_at, version) behind the provider's back."""
        raise NotImplementedError

    def execute(self, sql: str) -> None:
        """Run ``sql`` behind the provider's back."""
        raise NotImplementedError

    def make(self, dsn: str | None = None, **options: Any) -> SQLProvider:
        """A provider on ``dsn`` (the test server's by default)."""
        return self.provider_class(dsn or self.dsn, **options)

    def test_issue_example_config(self, table: str) -> None:
        manager = Manager(self.registry_name, {"ProviderConfig": self.dsn})
        provider = manager.provider
        assert isinstance(provider, self.provider_class)
        assert provider.table == "websession_sessions"
        client = Client(manager, "sync", None)
        client.roundtrip(user="ann")
        assert client.data() == {"user": "ann"}
        assert client.cookie is not None
        provider.delete(client.cookie)
        manager.close()

    def test_missing_driver_names_the_extra(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, self.driver, None)
        monkeypatch.delitem(sys.modules, self.module)
        with pytest.raises(MissingDependencyError, match=rf"websession\[{self.extra}\]") as info:
            importlib.import_module(self.module)
        assert info.value.extra == self.extra

    def test_async_pools_follow_the_event_loop(self, table: str) -> None:
        provider = self.make(table=table)
        later = time.time() + 60
        loops = [asyncio.new_event_loop() for _ in range(3)]

        async def own_pool() -> Pool[Any]:
            return provider._async_pools.get()

        try:
            for i, loop in enumerate(loops):  # one pool per loop, each opened in its loop
                assert loop.run_until_complete(
                    provider.acreate(f"{i:032x}", Record(b"x", later, 1)))
            pools = [loop.run_until_complete(own_pool()) for loop in loops]
            assert len({id(pool) for pool in pools}) == 3
            provider.close()  # from sync code: each pool is closed in its own (idle) loop
            assert all(pool.closed and not pool._idle for pool in pools)
        finally:
            for loop in loops:
                loop.close()
        assert provider.count() == 3
        provider.close()

    def test_gc_removes_expired_rows_in_batches_and_keeps_live_ones(self, table: str) -> None:
        provider = self.make(table=table, gc_batch_size=100)
        provider.count()  # creates the table
        now = time.time()
        self.bulk(table, [(f"{i:032x}", b"dead", now - 10 - i, 1) for i in range(1050)])
        self.bulk(table, [(f"live{i:028x}", b"live", now + 3600, 1) for i in range(20)])
        assert provider.gc() == 1050
        assert provider.count() == 20
        assert provider.read(f"live{0:028x}") == Record(b"live", now + 3600, 1)
        assert provider.gc() == 0
        provider.close()

    @pytest.mark.parametrize("mode", ["sync", "async"])
    def test_server_crash_and_restart(self, mode: str) -> None:
        with private_server(self.server_class) as server:
            provider = self.make(server.dsn, pool_timeout=1.0, max_connections=4)
            check_restart_recovery(server, provider, mode)

    # -- the operations: listing, the user index, batch creation -------------------------

    def _bound_session(self, manager: Manager, user: str) -> str:
        session = manager.get_session_store(None)
        session.bind_user(user)
        session["n"] = 1
        session.session_release([])
        return session.session_id()

    def test_a_table_from_before_per_user_sessions_gets_the_user_columns(
            self, table: str) -> None:
        self.execute(self.old_schema.format(t=table))
        now = time.time()
        self.bulk(table, [(f"{i:032x}", b"old", now + 3600, 1) for i in range(5)])
        with Manager(self.registry_name, {"providerConfig": {"dsn": self.dsn,
                                                             "table": table}}) as manager:
            sid = self._bound_session(manager, "ann")
            assert [info.sid for info in manager.sessions_of("ann")] == [sid]
            provider = manager.provider
            assert isinstance(provider, SQLProvider)
            assert provider.read(f"{0:032x}") == Record(b"old", now + 3600, 1)  # rows kept
            assert provider.count() == 6
        with Manager(self.registry_name, {"providerConfig": {"dsn": self.dsn,
                                                             "table": table}}) as manager:
            assert [info.sid for info in manager.sessions_of("ann")] == [sid]  # added once

    def test_an_old_table_the_provider_does_not_manage_says_what_is_missing(
            self, table: str) -> None:
        self.execute(self.old_schema.format(t=table))
        config = {"providerConfig": {"dsn": self.dsn, "table": table, "createTable": False}}
        with Manager(self.registry_name, config) as manager:
            sid = self._bound_session(manager, "ann")  # saving still works, unindexed
            assert manager.inspect(sid) is not None
            with pytest.raises(UnsupportedOperationError, match="no user_id column"):
                manager.sessions_of("ann")

    @pytest.mark.parametrize("mode", ["sync", "async"])
    def test_create_many_skips_live_ids_and_binds_users(self, table: str, mode: str) -> None:
        provider = self.make(table=table)
        now = time.time()
        provider.create("a" * 32, Record(b"kept", now + 60, 7))
        provider.create("b" * 32, Record(b"stale", now + 0.05, 1))
        time.sleep(0.1)  # b's row is expired now: create_many replaces it
        records = [("a" * 32, Record(b"new", now + 60, 1), "ann"),
                   ("b" * 32, Record(b"new", now + 60, 1), None),
                   *((f"{i:032x}", Record(b"new", now + 60, 1), "ann" if i % 2 else None)
                     for i in range(10))]
        if mode == "sync":
            created = provider.create_many(records)
        else:
            async def go() -> int:
                try:
                    return await provider.acreate_many(records)
                finally:
                    await provider.aclose()
            created = asyncio.run(go())
        assert created == 11
        assert provider.read("a" * 32) == Record(b"kept", now + 60, 7)
        assert provider.read("b" * 32) == Record(b"new", now + 60, 1)
        assert provider.create_many(records) == 0  # idempotent
        assert sorted(sid for sid, _ in provider.sessions_of("ann")) == [
            f"{i:032x}" for i in range(1, 10, 2)]  # the live "a…" row was left as it was
        provider.close()

    def test_gc_ids_names_what_it_removed(self, table: str) -> None:
        provider = self.make(table=table, gc_batch_size=7)
        provider.count()
        now = time.time()
        self.bulk(table, [(f"{i:032x}", b"dead", now - 10, 1) for i in range(20)])
        self.bulk(table, [(f"live{i:028x}", b"live", now + 3600, 1) for i in range(3)])
        assert sorted(provider.gc_ids()) == [f"{i:032x}" for i in range(20)]
        assert provider.count() == 3 and provider.gc_ids() == []
        provider.close()
