"""The PostgreSQL provider against a real PostgreSQL: the conformance suite in both modes,
configuration, pooling, GC, broken connections, and a crash and restart mid-run."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import psycopg_pool
import pytest
from tests.db_servers import PostgresServer
from tests.servers import require_server
from tests.sql_cases import Row, SQLProviderCases

from websession import ConfigurationError, Manager, StoreUnavailableError
from websession.providers._pool import CHECK_IDLE_AFTER, arun
from websession.providers.base import Record
from websession.providers.postgres import PostgresProvider
from websession.testing import Client, ProviderConformance, ScanConformance, UserConformance

HOST, PORT = "127.0.0.1", 5432
DSN = f"postgresql://postgres@{HOST}:{PORT}/test"


def _admin() -> psycopg.Connection[Any]:
    return psycopg.connect(DSN, autocommit=True)


@pytest.fixture
def table() -> Iterator[str]:
    """A table name of this test's own, dropped afterwards."""
    require_server("PostgreSQL", HOST, PORT)
    name = f"ws_test_{uuid.uuid4().hex[:12]}"
    yield name
    with _admin() as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{name}"')


class TestPostgresConformance(ProviderConformance, ScanConformance, UserConformance):
    @pytest.fixture
    def provider(self, table: str) -> PostgresProvider:
        return PostgresProvider(DSN, table=table)


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize("dsn", [
    DSN,
    f"host={HOST} port={PORT} dbname=test user=postgres",
    f"postgres://postgres@{HOST}/test?application_name=websession-test",
])
def test_dsn_forms(dsn: str, table: str) -> None:
    with Manager("postgresql", {"providerConfig": {"dsn": dsn, "table": table}}) as manager:
        client = Client(manager, "sync", None)
        client.roundtrip(user="ann")
        assert client.data() == {"user": "ann"}


@pytest.mark.parametrize(("dsn", "problem"), [
    ("host=127.0.0.1 frobnicate=1", "frobnicate"),
    ("host=127.0.0.1 dbname", 'missing "="'),
    ("postgresql://u@[::1/d", "]"),
])
def test_malformed_dsn_is_a_configuration_error(dsn: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="PostgreSQL DSN") as info:
        Manager("postgresql", {"providerConfig": dsn})
    assert problem in str(info.value)


def test_options_are_checked() -> None:
    for config, key in [
        ({"dsn": DSN, "table": 'x"; DROP TABLE y; --'}, "table"),
        ({"dsn": DSN, "poolTimeout": -1}, "poolTimeout"),
        ({"dsn": DSN, "pool": object()}, "pool"),
        ({"dsn": DSN, "asyncPool": object()}, "asyncPool"),
    ]:
        with pytest.raises(ConfigurationError) as info:
            Manager("postgresql", {"providerConfig": config})
        assert info.value.key == key, config


def test_json_config_and_schema_qualified_table(table: str) -> None:
    config = json.dumps({"dsn": DSN, "table": f"public.{table}", "maxConnections": 2,
                         "gcBatchSize": 3})
    with Manager("postgresql", {"providerConfig": config}) as manager:
        provider = manager.provider
        assert isinstance(provider, PostgresProvider)
        assert (provider.max_connections, provider.gc_batch_size) == (2, 3)
        Client(manager, "sync", None).roundtrip(x=1)
        assert manager.get_active_session() == 1


def _backends(table: str) -> int:
    with _admin() as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                           (table,)).fetchone()
    assert row is not None
    return int(row[0])


def test_pool_is_bounded(table: str) -> None:
    provider = PostgresProvider(f"{DSN}?application_name={table}", table=table,
                                max_connections=3)
    later = time.time() + 60
    seen = []

    def create(i: int) -> bool:
        seen.append(_backends(table))
        return provider.create(f"{i:032x}", Record(b"x", later, 1))

    with ThreadPoolExecutor(20) as pool:
        assert all(pool.map(create, range(60)))
    assert max(seen) <= 3
    assert provider.count() == 60
    provider.close()
    # The server ends a closed connection's backend a moment after the client goes.
    deadline = time.monotonic() + 5
    while _backends(table) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _backends(table) == 0


def test_application_owned_pools(table: str) -> None:
    later = time.time() + 60
    with psycopg_pool.ConnectionPool(DSN, min_size=1, max_size=2) as pool:  # not autocommit
        provider = PostgresProvider(table=table, pool=pool)
        assert provider.create("a" * 32, Record(b"x", later, 1))
        provider.close()
        with pool.connection() as conn:  # still open, and nothing was left uncommitted
            row = conn.execute(f'SELECT payload FROM "{table}"').fetchone()
            assert row == (b"x",)

    async def in_loop() -> None:
        async with psycopg_pool.AsyncConnectionPool(DSN, min_size=1, max_size=2) as apool:
            async_provider = PostgresProvider(table=table, async_pool=apool)
            assert await async_provider.acreate("b" * 32, Record(b"y", later, 1))
            assert await async_provider.aread("a" * 32) == Record(b"x", later, 1)
            assert await async_provider.agc() == 0
            await async_provider.aclose()
            async with apool.connection() as conn:
                await conn.execute("SELECT 1")

    asyncio.run(in_loop())


def test_an_exhausted_async_pool_is_a_store_outage(table: str) -> None:
    provider = PostgresProvider(DSN, table=table, max_connections=2, pool_timeout=0.2)
    manager = Manager(provider)

    async def scenario() -> None:
        pool = provider._async_pools.get()
        held = [await arun(pool.acquire()) for _ in range(2)]
        with pytest.raises(StoreUnavailableError) as info:
            await manager.aget_active_session()
        assert isinstance(info.value.__cause__, TimeoutError)
        for link in held:
            await arun(pool.release(link))
        assert await manager.aget_active_session() == 0
        # Many more tasks than connections: they queue, and all get served.
        assert await asyncio.gather(*(provider.acount() for _ in range(40))) == [0] * 40
        await manager.aclose()

    asyncio.run(scenario())


def test_terminated_connections_are_replaced_not_reused(table: str) -> None:
    provider = PostgresProvider(f"{DSN}?application_name={table}", table=table,
                                max_connections=4)
    provider.count()
    with _admin() as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE application_name = %s", (table,))
    time.sleep(CHECK_IDLE_AFTER + 0.2)  # connections given back just now are lent unchecked
    # The server closed every idle connection: each is noticed and replaced on borrow.
    for _ in range(8):
        assert provider.count() == 0
    provider.close()


def test_an_unreachable_server_is_a_store_outage(table: str) -> None:
    manager = Manager("postgresql", {"providerConfig": {
        "dsn": "postgresql://postgres@127.0.0.1:1/test?connect_timeout=1",
        "table": table, "poolTimeout": 0.5}})
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        manager.get_active_session()
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert time.monotonic() - started < 5
    manager.close()


# -- GC -----------------------------------------------------------------------------------


def _bulk(table: str, rows: list[tuple[str, bytes, float, int]]) -> None:
    with _admin() as conn, conn.cursor() as cur, cur.copy(
        f'COPY "{table}" (sid, payload, expires_at, version) FROM STDIN'
    ) as copy:
        for row in rows:
            copy.write_row(row)


def test_gc_walks_the_expiry_index(table: str) -> None:
    provider = PostgresProvider(DSN, table=table)
    provider.count()
    now = time.time()
    _bulk(table, [(f"{i:032x}", b"x", now + (i - 2000), 1) for i in range(20_000)])
    with _admin() as conn:
        conn.execute(f'ANALYZE "{table}"')
        # GC must reach the few expired rows through the index, never by a scan; count may
        # scan when most rows are live (the planner's call: that is the cheaper plan then).
        rows = conn.execute("EXPLAIN " + provider.statements.gc,
                            {"now": now, "batch": 1000}).fetchall()
        plan = "\n".join(row[0] for row in rows)
        assert f"{table}_expires_at" in plan, plan
        assert "Seq Scan" not in plan, plan
    provider.close()


class TestPostgresProvider(SQLProviderCases):
    provider_class = PostgresProvider
    registry_name = "postgresql"
    module = "websession.providers.postgres"
    driver = "psycopg"
    extra = "postgres"
    dsn = DSN
    server_class = PostgresServer

    old_schema = (
        'CREATE TABLE "{t}" (sid varchar(320) COLLATE "C" PRIMARY KEY, payload bytea NOT '
        "NULL, expires_at double precision NOT NULL, version bigint NOT NULL); "
        'CREATE INDEX "{t}_expires_at" ON "{t}" (expires_at)'
    )

    def bulk(self, table: str, rows: list[Row]) -> None:
        _bulk(table, rows)

    def execute(self, sql: str) -> None:
        with _admin() as conn:
            conn.execute(sql)
