"""Issue 9, item 1: one deadline per store operation (``operationTimeout``).

A private server of each kind is stalled with SIGSTOP (it accepts connections, then
answers nothing, as a partitioned or overloaded server does). Every request in flight, or
waiting for a pooled connection, must then end within the deadline plus a margin, as a
:class:`StoreUnavailableError` — a 503 through the WSGI and ASGI middleware — in both
modes, and the same manager must serve requests again once the server resumes. Elapsed
times are asserted one-sided (an upper bound), generous for a shared machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.db_servers import MariaDBServer, PostgresServer, PrivateServer, private_server
from tests.redis_servers import (
    HOST,
    ClusterServers,
    RedisServer,
    SentinelServers,
    free_port,
    require_redis_binaries,
)
from tests.redis_servers import private_server as redis_server
from tests.servers import stopped, unavailable
from tests.test_middleware import call_wsgi, cookie_of

from websession import (
    ASGISessionMiddleware,
    ConfigurationError,
    Manager,
    StoreUnavailableError,
    WSGISessionMiddleware,
)
from websession._loops import cancellable
from websession.providers._redis_cache import LEASE
from websession.providers.base import BaseProvider
from websession.providers.memcached import MemcachedProvider, parse_memcached_config
from websession.providers.mysql import MySQLPool, MySQLProvider
from websession.providers.postgres import PostgresProvider
from websession.providers.redis import (
    RedisClusterProvider,
    RedisProvider,
    RedisSentinelProvider,
    parse_redis_config,
)
from websession.providers.sqlite import SQLiteProvider
from websession.testing import Client

DEADLINE = 1.0
# The goal is the deadline plus 0.5 s (make reliability measures it on real servers); on a
# machine shared with other work a thread may wait that long for a core, so the bound
# here is more generous — and still far below the 5 to 40 s these requests took before.
MARGIN = 1.0
BOUND = DEADLINE + MARGIN
REQUESTS = 6  # more than the pools hold: some wait for a connection during the stall
POOL = 2


def wsgi_counter(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    session = environ["websession.session"]
    session["n"] = session.get("n", 0) + 1
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(session["n"]).encode()]


async def asgi_counter(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    session = scope["session"]
    session["n"] = session.get("n", 0) + 1
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(session["n"]).encode()})


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    began = time.monotonic()
    try:
        result: Any = call()
    except Exception as exc:  # what it raised is the result the test checks
        result = exc
    return result, time.monotonic() - began


def in_threads(calls: list[Callable[[], Any]]) -> list[tuple[Any, float]]:
    """Run each call in its own thread, all at once; their results and durations."""
    results: list[tuple[Any, float]] = [(None, 0.0)] * len(calls)
    start = threading.Barrier(len(calls))

    def worker(i: int) -> None:
        start.wait()
        results[i] = timed(calls[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


async def atimed(call: Callable[[], Any]) -> tuple[Any, float]:
    began = time.monotonic()
    try:
        result: Any = await call()
    except Exception as exc:
        result = exc
    return result, time.monotonic() - began


def assert_all_within(results: list[tuple[Any, float]], check: Callable[[Any], bool],
                      what: str) -> None:
    slow = [round(took, 2) for _, took in results if took > BOUND]
    assert not slow, f"{what}: {len(slow)} of {len(results)} took longer than {BOUND} s: {slow}"
    wrong = [result for result, _ in results if not check(result)]
    assert not wrong, f"{what}: {wrong[:3]}"


def is_503(result: Any) -> bool:
    if isinstance(result, tuple):  # call_wsgi's (status, headers, body)
        return bool(result[0] == "503 Service Unavailable")
    return isinstance(result, httpx.Response) and result.status_code == 503


def is_outage(result: Any) -> bool:
    return isinstance(result, StoreUnavailableError)


class Stall:
    """One manager over a store that is about to stall: sessions made in both modes,
    pools warm (their connections in use when the stall comes), then the checks."""

    def __init__(self, provider: BaseProvider) -> None:
        self.provider = provider
        self.manager = Manager(provider, {"gclifetime": 3600})
        self.wsgi = WSGISessionMiddleware(wsgi_counter, self.manager)
        self.asgi = ASGISessionMiddleware(asgi_counter, self.manager)
        self.runner = asyncio.Runner()
        self.cookies = [self._first_sync() for _ in range(REQUESTS)]
        self.runner.run(self._warm_async())

    def _first_sync(self) -> str:
        status, headers, body = call_wsgi(self.wsgi)
        assert (status, body) == ("200 OK", b"1"), (status, body)
        cookie = cookie_of(headers)
        assert cookie is not None
        return cookie

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.asgi),
                                 base_url="http://test")

    async def _warm_async(self) -> None:
        async with self._client() as client:
            for cookie in self.cookies:
                response = await client.get("/", headers={"cookie": cookie})
                assert response.status_code == 200

    def check_stalled(self) -> None:
        """During the stall: every request ends in time, as an outage, in both modes."""
        results = in_threads([partial(call_wsgi, self.wsgi, c) for c in self.cookies])
        assert_all_within(results, is_503, "WSGI requests to a stalled store")
        clients = [Client(self.manager, "sync", None, c.partition("=")[2])
                   for c in self.cookies]
        results = in_threads([client.open for client in clients])
        assert_all_within(results, is_outage, "blocking loads from a stalled store")
        self.runner.run(self._check_stalled_async())

    async def _check_stalled_async(self) -> None:
        async with self._client() as client:
            results = await asyncio.gather(*(
                atimed(partial(client.get, "/", headers={"cookie": c}))
                for c in self.cookies))
        assert_all_within(list(results), is_503, "ASGI requests to a stalled store")
        sessions = [Client(self.manager, "async", None, c.partition("=")[2]).begin()
                    for c in self.cookies]
        results = await asyncio.gather(*(atimed(s.aload) for s in sessions))
        assert_all_within(list(results), is_outage, "async loads from a stalled store")

    def check_recovered(self, within: float = 30.0) -> None:
        """After the stall: the same manager serves both modes again."""
        deadline = time.monotonic() + within
        while True:
            status, _, body = call_wsgi(self.wsgi, self.cookies[0])
            if status == "200 OK":
                break
            assert time.monotonic() < deadline, f"no recovery in {within:g} s: {status}"
            time.sleep(0.1)
        assert int(body) >= 2  # the session survived the stall
        self.runner.run(self._check_recovered_async(deadline))

    async def _check_recovered_async(self, deadline: float) -> None:
        async with self._client() as client:
            while True:
                response = await client.get("/", headers={"cookie": self.cookies[1]})
                if response.status_code == 200:
                    return
                assert time.monotonic() < deadline, "no async recovery"
                await asyncio.sleep(0.1)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.runner.run(self.manager.aclose())
        self.manager.close()
        self.runner.close()


@contextlib.contextmanager
def stall_of(provider: BaseProvider) -> Iterator[Stall]:
    stall = Stall(provider)
    try:
        yield stall
    finally:
        stall.close()


# -- Redis ------------------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(tmp_path / "redis") as server:
        yield server


def test_operation_timeout_is_read_from_every_redis_form() -> None:
    assert parse_redis_config({"operation_timeout": "250ms"}).operation_timeout == 0.25
    assert parse_redis_config({"operationTimeout": 2}).operation_timeout == 2.0
    assert parse_redis_config("redis://h/0?operation_timeout=1.5").operation_timeout == 1.5
    assert parse_redis_config("").operation_timeout == 5.0
    with pytest.raises(ConfigurationError) as refused:
        parse_redis_config({"operation_timeout": 0})
    assert refused.value.key == "operation_timeout"


@pytest.mark.parametrize("cache", [False, True], ids=["uncached", "cached"])
def test_a_stalled_redis_fails_every_request_within_the_deadline(
        private_redis: RedisServer, cache: bool) -> None:
    # pool_timeout longer than the deadline: the deadline must cut the pool wait short.
    # Without it, redis-py's 3 retries at a 5 s socket timeout took 20.8 s (ASGI) and
    # 40 s (WSGI).
    provider = RedisProvider({"save_path": f"{HOST}:{private_redis.port}", "poolsize": POOL,
                              "pool_timeout": 30, "operation_timeout": DEADLINE,
                              "key_prefix": f"dl:{uuid.uuid4().hex}:",
                              "client_cache": cache})
    with stall_of(provider) as stall:
        with stopped(pid_of(private_redis)):
            if cache:
                # The client-side cache serves what it holds until its tracking
                # connection has been silent for LEASE seconds (a stopped server takes
                # no writes meanwhile); from then on, every read goes to the server.
                time.sleep(LEASE + 0.2)
            stall.check_stalled()
        stall.check_recovered()


def pid_of(server: RedisServer) -> int:
    assert server.process is not None
    return server.process.pid


def test_a_stalled_redis_cluster_fails_every_request_within_the_deadline(
        tmp_path: Path) -> None:
    # Before: a timeout made redis-py refresh the topology, a connection to every node
    # with no deadline, one request after another: 3, 6, 9, 12 s for four requests.
    require_redis_binaries()
    servers = ClusterServers(tmp_path / "cluster")
    try:
        provider = RedisClusterProvider({"save_path": servers.seeds, "poolsize": POOL,
                                         "pool_timeout": 30, "operation_timeout": DEADLINE,
                                         "key_prefix": f"dl:{uuid.uuid4().hex}:"})
        with stall_of(provider) as stall:
            with contextlib.ExitStack() as stalled:
                for server in servers.masters:
                    stalled.enter_context(stopped(pid_of(server)))
                stall.check_stalled()
            stall.check_recovered()
    finally:
        servers.close()


def test_a_stalled_redis_sentinel_master_fails_every_request_within_the_deadline(
        tmp_path: Path) -> None:
    require_redis_binaries()
    servers = SentinelServers(tmp_path / "sentinel")
    try:
        provider = RedisSentinelProvider({
            "save_path": servers.addresses, "master_name": servers.master_name,
            "poolsize": POOL, "pool_timeout": 30, "operation_timeout": DEADLINE,
            "key_prefix": f"dl:{uuid.uuid4().hex}:"})
        with stall_of(provider) as stall:
            # The replica too: the sentinels cannot fail over, the stall lasts.
            with stopped(pid_of(servers.master)), stopped(pid_of(servers.replica)):
                time.sleep(LEASE + 0.2)  # the client-side cache's lease, as above
                stall.check_stalled()
            stall.check_recovered()
    finally:
        servers.close()


# -- PostgreSQL and MariaDB ---------------------------------------------------------------


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivateServer]:
    with private_server(PostgresServer) as server:
        yield server


@pytest.fixture(scope="module")
def private_mariadb() -> Iterator[PrivateServer]:
    with private_server(MariaDBServer) as server:
        yield server


def table() -> str:
    return f"ws_deadline_{uuid.uuid4().hex[:12]}"


def sql_provider(kind: str, dsn: str) -> BaseProvider:
    cls = PostgresProvider if kind == "postgres" else MySQLProvider
    # pool_timeout longer than the deadline: the deadline must cut the pool wait short.
    return cls(dsn, table=table(), max_connections=POOL, pool_timeout=30,
               operation_timeout=DEADLINE)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_stalled_sql_server_fails_every_request_within_the_deadline(
        kind: str, request: pytest.FixtureRequest) -> None:
    # Before: PostgreSQL had only a connect timeout, MySQL not even a read or write
    # timeout, so requests in flight hung for the whole stall.
    server: PrivateServer = request.getfixturevalue(
        "private_postgres" if kind == "postgres" else "private_mariadb")
    assert server.process is not None
    with stall_of(sql_provider(kind, server.dsn)) as stall:
        with stopped(server.process.pid):
            stall.check_stalled()
        stall.check_recovered()


class _LosesItsCancellation:
    """What Python 3.11's asyncio.wait_for does inside aiomysql's connect when the socket
    opens as the deadline's cancellation comes: the cancellation is lost, and the
    hand-shake goes on waiting for a server that never answers."""

    def __init__(self) -> None:
        self.result: asyncio.Future[str] | None = None

    async def work(self) -> str:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(60)
        self.result = asyncio.get_running_loop().create_future()
        return await self.result


def test_a_driver_that_loses_its_cancellation_cannot_hold_a_request_past_the_deadline(
        ) -> None:
    # It hung make test twice: the stalled-MariaDB test's async load never came back.
    driver = _LosesItsCancellation()
    abandoned: list[str] = []

    async def operation() -> None:
        async with asyncio.timeout(0.2):
            await cancellable(driver.work(), abandoned.append)

    async def scenario() -> float:
        began = time.monotonic()
        task = asyncio.ensure_future(operation())
        await asyncio.wait({task}, timeout=5)  # (not forever: without the fix, it hangs)
        assert task.done(), "the operation outlived its deadline"
        took = time.monotonic() - began
        with pytest.raises(TimeoutError):
            task.result()
        # The server answers at last: the connection nobody waits for goes to `abandoned`.
        while driver.result is None:
            await asyncio.sleep(0.01)
        driver.result.set_result("late connection")
        await asyncio.sleep(0.01)
        return took

    assert asyncio.run(scenario()) < BOUND
    assert abandoned == ["late connection"]


def test_operation_timeout_is_a_sql_option_checked_by_name() -> None:
    provider = PostgresProvider()
    provider.configure({"dsn": "postgresql://u@127.0.0.1/db", "operationTimeout": 2.5})
    assert provider.operation_timeout == 2.5
    # A Go duration, as every other provider (and the README) takes it.
    provider.configure({"dsn": "postgresql://u@127.0.0.1/db", "operationTimeout": "750ms"})
    assert provider.operation_timeout == 0.75
    with pytest.raises(ConfigurationError) as refused:
        MySQLProvider().configure({"dsn": "root:@tcp(127.0.0.1:3306)/test",
                                   "operation_timeout": -1})
    assert refused.value.key == "operationTimeout"


def test_an_exhausted_application_pool_fails_within_the_deadline(
        private_mariadb: PrivateServer) -> None:
    # The application's pool waits 30 s for a free connection: the operation's deadline
    # must end the wait. Its every connection is held by someone else meanwhile.
    pool = MySQLPool(private_mariadb.dsn, max_size=1, timeout=30)
    provider = MySQLProvider(pool=pool, table=table(), operation_timeout=DEADLINE)
    manager = Manager(provider, {"gclifetime": 3600})
    held = pool.acquire()
    try:
        results = in_threads([lambda: provider.read("x") for _ in range(3)])
        assert_all_within(results, lambda r: isinstance(r, TimeoutError),
                          "reads waiting on an exhausted application pool")
        # A fresh session is not read: the outage shows when the request saves it.
        app = WSGISessionMiddleware(wsgi_counter, manager)
        results = in_threads([lambda: call_wsgi(app) for _ in range(3)])
        assert_all_within(results, is_503, "WSGI saves waiting on an exhausted pool")
    finally:
        pool.release(held)
        manager.close()
        pool.close()


def test_an_exhausted_async_application_pool_fails_within_the_deadline(
        private_postgres: PrivateServer) -> None:
    import psycopg_pool  # the postgres extra's: a missing one must fail, never skip

    async def scenario() -> None:
        async with psycopg_pool.AsyncConnectionPool(private_postgres.dsn, min_size=1,
                                                    max_size=1, timeout=30,
                                                    open=False) as pool:
            provider = PostgresProvider(async_pool=pool, table=table(),
                                        operation_timeout=DEADLINE)
            manager = Manager(provider, {"gclifetime": 3600})
            app = ASGISessionMiddleware(asgi_counter, manager)
            async with pool.connection():  # every connection held by someone else
                results = await asyncio.gather(*(atimed(lambda: provider.aread("x"))
                                                 for _ in range(3)))
                assert_all_within(list(results), lambda r: isinstance(r, Exception),
                                  "async reads waiting on an exhausted application pool")
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                             base_url="http://test") as client:
                    results = await asyncio.gather(*(atimed(lambda: client.get("/"))
                                                     for _ in range(3)))
                assert_all_within(list(results), is_503,
                                  "ASGI saves waiting on an exhausted application pool")
            await manager.aclose()

    asyncio.run(scenario())


# -- memcached ------------------------------------------------------------------------------


@dataclass
class Memcached:
    process: subprocess.Popen[bytes]
    port: int


@pytest.fixture
def private_memcached() -> Iterator[Memcached]:
    if shutil.which("memcached") is None:
        unavailable("memcached is not installed: a private server cannot start")
    port = free_port()
    args = ["memcached", "-l", HOST, "-p", str(port), "-U", "0", "-m", "16"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    process = subprocess.Popen(args, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "private memcached did not start"
                time.sleep(0.05)
        yield Memcached(process, port)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait()


def test_operation_timeout_caps_memcached_timeouts() -> None:
    options = parse_memcached_config({"timeout": 30, "operationTimeout": "2s"})
    assert (options.command_timeout, options.open_timeout) == (2.0, 2.0)
    with pytest.raises(ConfigurationError) as refused:
        parse_memcached_config({"operationTimeout": 0})
    assert refused.value.key == "operationTimeout"


def test_a_stalled_memcached_fails_every_request_within_the_deadline(
        private_memcached: Memcached) -> None:
    port = private_memcached.port
    provider = MemcachedProvider({"servers": f"{HOST}:{port}", "timeout": 30,
                                  "operationTimeout": DEADLINE, "poolSize": POOL,
                                  "keyPrefix": f"dl{uuid.uuid4().hex[:8]}:"})
    with stall_of(provider) as stall:
        with stopped(private_memcached.process.pid):
            stall.check_stalled()
        stall.check_recovered()


# -- SQLite ------------------------------------------------------------------------------------


def test_sqlite_waits_for_a_held_write_lock_only_until_the_deadline(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    provider = SQLiteProvider()
    provider.configure({"path": path, "operationTimeout": DEADLINE})
    assert provider.busy_timeout == DEADLINE
    manager = Manager(provider, {"gclifetime": 3600})
    app = WSGISessionMiddleware(wsgi_counter, manager)
    status, headers, _ = call_wsgi(app)
    cookie = cookie_of(headers)
    assert status == "200 OK" and cookie is not None
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # another process's long write transaction
    try:
        results = in_threads([lambda: call_wsgi(app, cookie) for _ in range(3)])
        assert_all_within(results, is_503, "saves waiting on SQLite's write lock")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert call_wsgi(app, cookie)[0] == "200 OK"
    manager.close()
    with pytest.raises(ConfigurationError) as refused:
        SQLiteProvider().configure({"path": path, "operation_timeout": "soon"})
    assert refused.value.key == "operationTimeout"
