"""The MySQL / MariaDB provider against a real MariaDB: the conformance suite in both modes,
configuration, pooling, GC, broken connections, and a crash and restart mid-run."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pymysql  # type: ignore[import-untyped, unused-ignore]
import pytest
from tests.db_servers import MariaDBServer
from tests.servers import require_server
from tests.sql_cases import Row, SQLProviderCases

from websession import ConfigurationError, Manager, StoreUnavailableError
from websession.providers._pool import CHECK_IDLE_AFTER, run
from websession.providers.base import Record
from websession.providers.mysql import MySQLParams, MySQLPool, MySQLProvider, PoolTimeout, parse_dsn
from websession.testing import Client, ProviderConformance, ScanConformance, UserConformance

HOST, PORT = "127.0.0.1", 3306
DSN = f"root:@tcp({HOST}:{PORT})/test?charset=utf8mb4"


def _admin() -> Any:
    return pymysql.connect(host=HOST, port=PORT, user="root", database="test", autocommit=True)


@pytest.fixture
def table() -> Iterator[str]:
    """A table name of this test's own, dropped afterwards."""
    require_server("MariaDB", HOST, PORT)
    name = f"ws_test_{uuid.uuid4().hex[:12]}"
    yield name
    conn = _admin()
    try:
        conn.cursor().execute(f"DROP TABLE IF EXISTS `{name}`")
    finally:
        conn.close()


class TestMySQLConformance(ProviderConformance, ScanConformance, UserConformance):
    @pytest.fixture
    def provider(self, table: str) -> MySQLProvider:
        return MySQLProvider(DSN, table=table)


# -- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(("dsn", "expected"), [
    ("root:@tcp(127.0.0.1:3306)/test?charset=utf8mb4",
     MySQLParams(user="root", database="test")),
    ("user:p@ss:w/rd@tcp(db.example:3307)/sessions",
     MySQLParams(host="db.example", port=3307, user="user", password="p@ss:w/rd",
                 database="sessions")),
    ("/test", MySQLParams(database="test")),
    ("root@tcp([::1]:3310)/x?timeout=1m30s&readTimeout=500ms&parseTime=true&loc=Local",
     MySQLParams(host="::1", port=3310, user="root", database="x", connect_timeout=90.0,
                 read_timeout=0.5)),
    ("root@tcp(localhost)/x?charset=utf8mb4,utf8",
     MySQLParams(host="localhost", user="root", database="x")),
    ("app:secret@unix(/run/mysqld/mysqld.sock)/db",
     MySQLParams(user="app", password="secret", database="db",
                 unix_socket="/run/mysqld/mysqld.sock")),
    ("mysql://app:s%40cret@db.example:3307/sessions?charset=latin1&connect_timeout=2",
     MySQLParams(host="db.example", port=3307, user="app", password="s@cret",
                 database="sessions", charset="latin1", connect_timeout=2.0)),
    ("mariadb://root@127.0.0.1/test?unix_socket=/tmp/m.sock",
     MySQLParams(user="root", database="test", unix_socket="/tmp/m.sock")),
])
def test_dsn_forms(dsn: str, expected: MySQLParams) -> None:
    assert parse_dsn(dsn) == expected


def test_tls_parameter() -> None:
    assert parse_dsn("root@tcp(h)/d").ssl is None
    verified = parse_dsn("root@tcp(h)/d?tls=true").ssl
    assert verified is not None and verified.check_hostname
    lax = parse_dsn("root@tcp(h)/d?tls=skip-verify").ssl
    assert lax is not None and lax.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(("dsn", "problem"), [
    ("root@tcp(127.0.0.1:3306)", "no '/'"),
    ("root@tcp(127.0.0.1:3306/test", "closed by ')'"),
    ("root@tcp(127.0.0.1:99999)/test", "port"),
    ("root@udp(127.0.0.1)/test", "unknown network 'udp'"),
    ("root@tcp(h)/test?timeout=soon", "timeout must be seconds or a Go duration"),
    ("root@tcp(h)/test?tls=custom", "tls='custom'"),
    ("root@tcp(h)/test?frobnicate=1", "unknown parameter 'frobnicate'"),
    ("postgres://u@h/d", "scheme 'postgres'"),
    ("", "empty"),
])
def test_malformed_dsn_is_a_configuration_error(dsn: str, problem: str) -> None:
    with pytest.raises(ConfigurationError, match="MySQL DSN") as info:
        parse_dsn(dsn)
    assert problem in str(info.value)
    with pytest.raises(ConfigurationError):
        Manager("mysql", {"providerConfig": dsn})


def test_dsn_errors_never_echo_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_dsn("root:hunter2@tcp(h:0)/d")
    assert "hunter2" not in str(info.value)


def test_options_are_checked() -> None:
    for config, key in [
        ({"dsn": DSN, "table": "bad-name"}, "table"),
        ({"dsn": DSN, "table": "x" * 49}, "table"),
        ({"dsn": DSN, "maxConnections": 0}, "maxConnections"),
        ({"dsn": DSN, "gcBatchSize": 1.5}, "gcBatchSize"),
        ({"dsn": DSN, "pool": object()}, "pool"),
        ({"dsn": DSN, "frob": 1}, "frob"),
    ]:
        with pytest.raises(ConfigurationError) as info:
            Manager("mysql", {"providerConfig": config})
        assert info.value.key == key, config
    with pytest.raises(ConfigurationError, match="needs providerConfig"):
        Manager("mysql")


def test_json_config_with_options(table: str) -> None:
    config = json.dumps({"dsn": f"mysql://root@{HOST}:{PORT}/test", "table": table,
                         "maxConnections": 3, "poolTimeout": 0.5, "gcBatchSize": 7})
    with Manager("mysql", {"providerConfig": config}) as manager:
        provider = manager.provider
        assert isinstance(provider, MySQLProvider)
        assert (provider.table, provider.max_connections, provider.pool_timeout,
                provider.gc_batch_size) == (table, 3, 0.5, 7)
        Client(manager, "sync", None).roundtrip(x=1)
        assert manager.get_active_session() == 1


def test_pool_is_bounded(table: str) -> None:
    provider = MySQLProvider(DSN, table=table, max_connections=3)
    sids = [f"{i:032x}" for i in range(60)]
    later = time.time() + 60
    with ThreadPoolExecutor(30) as pool:
        assert all(pool.map(lambda sid: provider.create(sid, Record(b"x", later, 1)), sids))
    own = provider._own_pool
    assert own is not None and len(own._idle) <= 3
    assert provider.count() == 60
    provider.close()


def test_pool_timeout_when_every_connection_is_borrowed() -> None:
    require_server("MariaDB", HOST, PORT)
    pool = MySQLPool(DSN, max_size=1, timeout=0.2)
    conn = pool.acquire()
    started = time.monotonic()
    with pytest.raises(PoolTimeout):
        pool.acquire()
    assert time.monotonic() - started < 2
    pool.release(conn)
    pool.release(pool.acquire())
    pool.close()


def test_a_pool_timeout_is_a_store_outage(table: str) -> None:
    pool = MySQLPool(DSN, max_size=1, timeout=0.2)
    manager = Manager("mysql", {"providerConfig": {"pool": pool, "table": table}})
    held = pool.acquire()
    with pytest.raises(StoreUnavailableError):
        manager.get_active_session()
    pool.release(held)
    assert manager.get_active_session() == 0
    manager.close()
    pool.release(pool.acquire())  # the application's pool is still open
    pool.close()


def test_application_owned_pools(table: str) -> None:
    import aiomysql  # type: ignore[import-untyped, unused-ignore]

    pool = MySQLPool(DSN, max_size=2)
    provider = MySQLProvider(table=table, pool=pool)
    later = time.time() + 60
    assert provider.create("a" * 32, Record(b"x", later, 1))

    async def in_loop() -> None:
        apool = await aiomysql.create_pool(host=HOST, port=PORT, user="root", db="test",
                                           maxsize=2)  # autocommit off: still committed
        async_provider = MySQLProvider(table=table, async_pool=apool)
        assert await async_provider.acreate("b" * 32, Record(b"y", later, 1))
        assert await async_provider.aread("a" * 32) == Record(b"x", later, 1)
        await async_provider.aclose()
        async with apool.acquire() as conn, conn.cursor() as cur:  # still ours to use
            await cur.execute("SELECT 1")
        apool.close()
        await apool.wait_closed()

    asyncio.run(in_loop())
    assert provider.read("b" * 32) == Record(b"y", later, 1)
    provider.close()
    pool.release(pool.acquire())  # not closed by the provider
    pool.close()


def test_killed_connections_are_replaced_not_reused(table: str) -> None:
    provider = MySQLProvider(DSN, table=table, max_connections=4)
    provider.count()
    pool = provider._own_pool
    assert pool is not None
    conns = [run(pool.acquire()) for _ in range(4)]
    ids = [conn.thread_id() for conn in conns]
    for conn in conns:
        run(pool.release(conn))
    admin = _admin()
    for thread_id in ids:
        admin.cursor().execute(f"KILL {int(thread_id)}")
    admin.close()
    time.sleep(CHECK_IDLE_AFTER + 0.2)  # connections given back just now are lent unchecked
    # The server closed every idle connection: each is noticed and replaced on borrow.
    for _ in range(8):
        assert provider.count() == 0
    provider.close()


# -- GC -----------------------------------------------------------------------------------


def _bulk(table: str, rows: list[tuple[str, bytes, float, int]]) -> None:
    conn = _admin()
    try:
        conn.cursor().executemany(
            f"INSERT INTO `{table}` (sid, payload, expires_at, version) VALUES (%s, %s, %s, %s)",
            rows,
        )
    finally:
        conn.close()


def test_gc_and_count_walk_the_expiry_index(table: str) -> None:
    provider = MySQLProvider(DSN, table=table)
    provider.count()
    now = time.time()
    _bulk(table, [(f"{i:032x}", b"x", now + (i - 2000), 1) for i in range(4000)])
    conn = _admin()
    try:
        cur = conn.cursor(pymysql.cursors.DictCursor)
        for sql in (provider.statements.gc, provider.statements.count):
            cur.execute("EXPLAIN " + sql, {"now": now, "batch": 1000})
            plan = cur.fetchone()
            assert plan["key"] == f"{table}_expires_at", plan
    finally:
        conn.close()
    provider.close()


class TestMySQLProvider(SQLProviderCases):
    provider_class = MySQLProvider
    registry_name = "mysql"
    module = "websession.providers.mysql"
    driver = "pymysql"
    extra = "mysql"
    dsn = DSN
    server_class = MariaDBServer

    old_schema = (
        "CREATE TABLE `{t}` (sid VARBINARY(320) NOT NULL, payload LONGBLOB NOT NULL, "
        "expires_at DOUBLE NOT NULL, version BIGINT NOT NULL, PRIMARY KEY (sid), "
        "KEY `{t}_expires_at` (expires_at)) ENGINE=InnoDB"
    )

    def bulk(self, table: str, rows: list[Row]) -> None:
        _bulk(table, rows)

    def execute(self, sql: str) -> None:
        conn = _admin()
        try:
            conn.cursor().execute(sql)
        finally:
            conn.close()


def test_a_failed_bind_rolls_back_and_releases_its_lock(table: str) -> None:
    provider = MySQLProvider(DSN, table=table, max_connections=1)
    later = time.time() + 60
    provider.create("a" * 32, Record(b"x", later, 1))
    with pytest.raises(pymysql.err.DataError):  # a user ID past VARBINARY(320)
        provider.bind("a" * 32, "u" * 400, 3)
    # The one connection went back to the pool outside any transaction: what it writes
    # next is committed at once, and the user's lock is free.
    assert provider.update("a" * 32, Record(b"y", later, 2), 1)
    conn = _admin()
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT payload FROM `{table}` WHERE sid = %s", ("a" * 32,))
        assert cursor.fetchone() == (b"y",)
        cursor.execute("SELECT IS_FREE_LOCK(CONCAT('ws:', SHA1(%s)))",
                       (provider.lock_name("u" * 400),))
        assert cursor.fetchone() == (1,)
    finally:
        conn.close()
    provider.close()
