"""The Redis providers against real servers: the conformance suite for one server (the
Redis on 127.0.0.1:6379), a three-master cluster and a Sentinel set-up started here;
round trips counted by the server itself; concurrency; an outage and a failover."""

from __future__ import annotations

import asyncio
import importlib
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from redis.crc import key_slot
from tests.redis_servers import (
    HOST,
    ClusterServers,
    CommandLog,
    RedisServer,
    SentinelServers,
    free_port,
    require_redis_binaries,
    wait_for,
)
from tests.servers import require_server, stopped

import websession.providers._redis_commands as redis_commands
from websession import (
    ASGISessionMiddleware,
    ConfigurationError,
    Manager,
    MissingDependencyError,
    SessionModeError,
    StoreUnavailableError,
    WSGISessionMiddleware,
)
from websession._session import SessionStore
from websession.providers._redis_ops import INDEX_PREFIX
from websession.providers.base import Record
from websession.providers.redis import (
    RedisClusterProvider,
    RedisProvider,
    RedisSentinelProvider,
    parse_redis_config,
)
from websession.testing import Client, ProviderConformance, ScanConformance, UserConformance

# -- servers ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterServers]:
    """A three-master Redis Cluster on loopback ports, for the whole run."""
    require_redis_binaries()
    servers = ClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelServers]:
    """A master, a replica and three sentinels, for the whole run."""
    require_redis_binaries()
    servers = SentinelServers(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A server of this test's own, durable (AOF, fsync on every write) so that a crash
    and a restart on the same port keep what was acknowledged."""
    require_redis_binaries()
    server = RedisServer(tmp_path / "redis", free_port(), "--appendonly", "yes",
                         "--appendfsync", "always")
    try:
        yield server.start()
    finally:
        server.stop(kill=True)


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own, so counts see only this test's sessions."""
    return f"wstest:{uuid.uuid4().hex[:12]}:"


def _drop_keys(client: redis.Redis, prefix: str) -> None:
    keys = [*client.scan_iter(match=prefix + "*", count=1000),
            *client.scan_iter(match=INDEX_PREFIX + prefix + "*", count=1000)]
    if keys:
        client.delete(*keys)


@pytest.fixture
def local_redis(prefix: str) -> Iterator[str]:
    """The address of the Redis on 127.0.0.1:6379; this test's keys are removed after."""
    require_server("Redis", HOST, 6379)
    yield f"{HOST}:6379"
    with redis.Redis(HOST, 6379) as client:
        _drop_keys(client, prefix)


# -- the conformance suite, three times -----------------------------------------------------


class _RedisConformance(ProviderConformance, ScanConformance, UserConformance):
    expiry_slack = 0.1  # Redis expires keys to the millisecond


class TestRedisConformance(_RedisConformance):
    @pytest.fixture
    def provider(self, local_redis: str, prefix: str) -> RedisProvider:
        return RedisProvider(f"{local_redis},100", key_prefix=prefix)


class TestRedisClusterConformance(_RedisConformance):
    @pytest.fixture
    def provider(self, redis_cluster: ClusterServers,
                 prefix: str) -> RedisClusterProvider:
        return RedisClusterProvider(redis_cluster.seeds, key_prefix=prefix)


class TestRedisSentinelConformance(_RedisConformance):
    @pytest.fixture
    def provider(self, redis_sentinel: SentinelServers,
                 prefix: str) -> RedisSentinelProvider:
        return RedisSentinelProvider(f"{redis_sentinel.addresses},100,,0,mymaster",
                                     key_prefix=prefix)


# -- configuration --------------------------------------------------------------------------


def test_seed_string_json_and_url_forms() -> None:
    seed = parse_redis_config("127.0.0.1:6380,50,astaxie,2,30")
    assert (seed.addresses, seed.pool_size, seed.password, seed.db) == (
        (("127.0.0.1", 6380),), 50, "astaxie", 2)
    assert seed.health_check_interval == 30  # beego's idle_timeout, in seconds
    beego_json = parse_redis_config(
        '{"save_path": "10.0.0.5:6379", "poolsize": 8, "password": "", "dbNum": 3, '
        '"idle_timeout": "1m30s", "idle_check_frequency": "10s", "max_retries": 1}'
    )
    assert (beego_json.addresses, beego_json.pool_size, beego_json.password, beego_json.db,
            beego_json.health_check_interval, beego_json.max_retries) == (
        (("10.0.0.5", 6379),), 8, None, 3, 90.0, 1)
    url = parse_redis_config("rediss://ann:p%40ss@cache.example:6390/4?ssl_cert_reqs=none")
    assert (url.addresses, url.username, url.password, url.db, url.ssl) == (
        (("cache.example", 6390),), "ann", "p@ss", 4, True)
    assert url.connection == {"ssl_cert_reqs": "none"}
    tuned = parse_redis_config("redis://h/0?socket_timeout=0.5&prefix=app%3A&poolsize=7")
    assert (tuned.key_prefix, tuned.pool_size, tuned.connection) == (
        "app:", 7, {"socket_timeout": 0.5})
    assert parse_redis_config("unix:///run/redis.sock?db=1").unix_socket == "/run/redis.sock"
    assert parse_redis_config({"conn": "[::1]:7000", "prefix": "s:"}).addresses == (
        ("::1", 7000),)
    assert parse_redis_config("").addresses == ((HOST, 6379),)


def test_cluster_and_sentinel_forms() -> None:
    cluster = parse_redis_config("10.0.0.1:7000;10.0.0.2:7001,10,secret", "redis_cluster")
    assert cluster.addresses == (("10.0.0.1", 7000), ("10.0.0.2", 7001))
    assert (cluster.pool_size, cluster.password) == (10, "secret")
    urls = parse_redis_config("redis://:pw@a:7000;redis://b:7001", "redis_cluster")
    assert (urls.addresses, urls.password) == ((("a", 7000), ("b", 7001)), "pw")
    sentinel = parse_redis_config("s1:26379;s2,20,pw,1,cache", "redis_sentinel")
    assert (sentinel.addresses, sentinel.master_name, sentinel.db) == (
        (("s1", 26379), ("s2", 26379)), "cache", 1)
    assert parse_redis_config("s1;s2", "redis_sentinel").master_name == "mymaster"
    url = parse_redis_config(
        "redis+sentinel://:pw@s1:5000,s2/cache/2?sentinel_password=spw", "redis_sentinel")
    assert (url.addresses, url.password, url.master_name, url.db, url.sentinel_password) == (
        (("s1", 5000), ("s2", 26379)), "pw", "cache", 2, "spw")


@pytest.mark.parametrize(("provider", "config", "names"), [
    ("redis", "127.0.0.1:port", "port"),
    ("redis", "127.0.0.1:6379,many", "poolsize"),
    ("redis", "127.0.0.1:6379,10,pw,-1", "db_num"),
    ("redis", "127.0.0.1:6379,0", "poolsize"),
    ("redis", "a:1,1,p,0,1,1,1,extra", "too many"),
    ("redis", "a:1;b:2", "one address"),
    ("redis", '{"poolsize": "ten"}', "poolsize"),
    ("redis", '{"savepath": "a", "colour": 1}', "colour"),
    ("redis", '{"idle_timeout": "soon"}', "idle_timeout"),
    ("redis", "{not json", "invalid JSON"),
    ("redis", "redis://h:notaport", "invalid URL"),
    ("redis", "redis://h/0?colour=red", "colour"),
    ("redis", 42, "client"),
    ("redis_cluster", "", "addresses are required"),
    ("redis_cluster", "a:7000,10,pw,3", "database 0"),
    ("redis_sentinel", "redis://s1:26379", r"redis\+sentinel://"),
])
def test_malformed_config_is_named(provider: str, config: Any, names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        parse_redis_config(config, provider)


def test_registered_names_and_manager_config(local_redis: str, prefix: str) -> None:
    manager = Manager("redis", {"ProviderConfig": f'{{"save_path": "{local_redis}", '
                                                   f'"poolsize": 4, "key_prefix": "{prefix}"}}'})
    try:
        assert isinstance(manager.provider, RedisProvider)
        assert manager.provider.key_prefix == prefix
        assert manager.get_active_session() == 0
    finally:
        manager.close()
    for name, kind in (("redis_cluster", RedisClusterProvider),
                       ("redis_sentinel", RedisSentinelProvider)):
        with pytest.raises(ConfigurationError, match="addresses are required"):
            Manager(name)
        assert isinstance(Manager(name, {"ProviderConfig": "10.0.0.1:7000"}).provider, kind)


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # `import redis` now fails
    monkeypatch.delitem(sys.modules, "websession.providers.redis")
    with pytest.raises(MissingDependencyError, match=r"websession\[redis\]"):
        importlib.import_module("websession.providers.redis")


def test_password_from_the_seed_string(tmp_path: Path) -> None:
    require_redis_binaries()
    server = RedisServer(tmp_path / "auth", free_port(), "--requirepass", "astaxie")
    try:
        server.start()
        good = Manager("redis", {"ProviderConfig": f"{HOST}:{server.port},10,astaxie"})
        bad = Manager("redis", {"ProviderConfig": f"{HOST}:{server.port},10,wrong"})
        try:
            assert good.get_active_session() == 0
            with pytest.raises(StoreUnavailableError):
                bad.get_active_session()
        finally:
            good.close()
            bad.close()
    finally:
        server.stop()


def test_an_application_owned_client(local_redis: str, prefix: str) -> None:
    owned = redis.Redis(HOST, 6379)
    provider = RedisProvider(owned, key_prefix=prefix)
    sid = "a1" * 16
    assert provider.create(sid, Record(b"x", time.time() + 60, 1))
    # The async API reaches a sync client through a thread.
    through_thread = asyncio.run(provider.aread(sid))
    assert through_thread is not None and through_thread[::2] == (b"x", 1)
    provider.close()
    assert owned.ping()  # not ours to close
    owned.close()

    async def async_only() -> None:
        client = aredis.Redis(host=HOST, port=6379)
        mine = RedisProvider({"client": client}, key_prefix=prefix)
        record = await mine.aread(sid)
        assert record is not None and record.payload == b"x"
        with pytest.raises(SessionModeError):
            mine.read(sid)
        await mine.aclose()
        assert await client.ping()
        await client.aclose()

    asyncio.run(async_only())


# -- round trips, counted by the server ----------------------------------------------------


def _app_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ["PATH_INFO"]
    session = environ["websession.session"]
    if path == "/read":
        body = str(session.get("n")).encode()
    elif path == "/write":
        session["n"] = session.get("n", 0) + 1
        body = str(session["n"]).encode()
    elif path.startswith("/login"):  # /login: a new ID; /login/<user>: bound to the user
        session.regenerate_id()
        if path.count("/") == 2:
            session["_user"] = path.rsplit("/", 1)[1]
        body = str(session.get("n")).encode()
    else:
        body = b"untouched"
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [body]


class _CookieJar:
    """Keeps the session cookie a response sets, as a browser does."""

    def __init__(self) -> None:
        self.cookie = ""

    def _keep(self, headers: list[tuple[str, str]]) -> None:
        for name, value in headers:
            if name.lower() == "set-cookie":
                pair = value.split(";", 1)[0]
                self.cookie = "" if "Max-Age=0" in value else pair


class WSGIBrowser(_CookieJar):
    """Calls a WSGI app in-process."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        super().__init__()
        self.app = app

    def get(self, path: str) -> bytes:
        environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "PATH_INFO": path,
                                   "wsgi.url_scheme": "http"}
        if self.cookie:
            environ["HTTP_COOKIE"] = self.cookie
        headers: list[tuple[str, str]] = []

        def start_response(status: str, response_headers: list[tuple[str, str]],
                           exc_info: Any = None) -> None:
            headers.extend(response_headers)

        result = self.app(environ, start_response)
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
        self._keep(headers)
        return body


Message = MutableMapping[str, Any]


async def _app_asgi(scope: Message, receive: Callable[[], Awaitable[Message]],
                    send: Callable[[Message], Awaitable[None]]) -> None:
    session: SessionStore = scope["session"]
    path = scope["path"]
    if path != "/untouched" and not session.loaded:
        await session.aload()
    if path == "/read":
        body = str(session.get("n")).encode()
    elif path == "/write":
        session["n"] = session.get("n", 0) + 1
        body = str(session["n"]).encode()
    else:
        body = b"untouched"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


class ASGIBrowser(_CookieJar):
    """Calls an ASGI app in-process."""

    def __init__(self, app: ASGISessionMiddleware) -> None:
        super().__init__()
        self.app = app

    async def aget(self, path: str) -> bytes:
        headers = [(b"cookie", self.cookie.encode())] if self.cookie else []
        scope = {"type": "http", "scheme": "http", "path": path, "headers": headers,
                 "query_string": b"", "method": "GET"}
        response: list[tuple[str, str]] = []
        body: list[bytes] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                response.extend((k.decode(), v.decode()) for k, v in message["headers"])
            else:
                body.append(message.get("body", b""))

        await self.app(scope, receive, send)
        self._keep(response)
        return b"".join(body)


@pytest.fixture
def command_log(private_redis: RedisServer) -> Iterator[CommandLog]:
    log = CommandLog(private_redis)
    try:
        yield log
    finally:
        log.close()


def _config(server: RedisServer, cache: bool) -> dict[str, Any]:
    return {"ProviderConfig": {"save_path": f"{HOST}:{server.port}", "client_cache": cache}}


def wait_live(provider: Any) -> None:
    """Wait until the provider's client-side cache tracks invalidations."""
    provider.cache_stats()  # starts tracking
    wait_for(lambda: provider.cache_stats()["live"], 5, "client-side cache tracking")


def _data_commands(log: CommandLog) -> list[str]:
    """The commands of the request path: not the cache's tracking connection's."""
    return [name for name in log.take() if name not in ("PING", "CLIENT", "SUBSCRIBE")]


@pytest.mark.parametrize("cache", [False, True], ids=["uncached", "cached"])
def test_round_trips_through_wsgi(private_redis: RedisServer, command_log: CommandLog,
                                  cache: bool) -> None:
    manager = Manager("redis", _config(private_redis, cache))
    browser = WSGIBrowser(WSGISessionMiddleware(_app_wsgi, manager))
    try:
        assert isinstance(manager.provider, RedisProvider)
        if cache:
            wait_live(manager.provider)
        # Warm up: the connection's hand-shake, and the compare-and-set script's first use
        # on this server (EVALSHA, NOSCRIPT, then EVAL: once per script and server start).
        manager.provider.read("0" * 32)
        manager.provider.update("0" * 32, Record(b"", time.time() + 1, 2), 1)
        warm_up = _data_commands(command_log)
        assert warm_up[-3:] == ["GET", "EVALSHA", "EVAL"], warm_up
        assert browser.get("/write") == b"1"  # a new session: nothing to read, one write
        assert _data_commands(command_log) == ["SET"]
        assert browser.get("/untouched") == b"untouched"
        assert _data_commands(command_log) == []
        # Cached, what this process wrote reads for free, and a change costs its write;
        # uncached, a read is a GET until its refresh is due.
        read = [] if cache else ["GET"]
        assert browser.get("/read") == b"1"
        assert _data_commands(command_log) == read
        assert browser.get("/write") == b"2"
        assert _data_commands(command_log) == [*read, "EVALSHA"]
        assert browser.get("/write") == b"3"
        assert _data_commands(command_log) == [*read, "EVALSHA"]
        # A new ID bound to nobody: the read, the new record and the old ID's deletion;
        # nothing for the user index.
        assert browser.get("/login") == b"3"
        assert _data_commands(command_log) == [*read, "SET", "DEL"]
        # Bound to a user: the index's commands follow.
        assert browser.get("/login/alice") == b"3"
        commands = _data_commands(command_log)
        assert commands[:len(read) + 2] == [*read, "SET", "DEL"]
        assert "EVALSHA" in commands[len(read) + 2:], commands
    finally:
        manager.close()


@pytest.mark.parametrize("cache", [False, True], ids=["uncached", "cached"])
@pytest.mark.parametrize("autoload", [False, True])
def test_round_trips_through_asgi(private_redis: RedisServer, command_log: CommandLog,
                                  autoload: bool, cache: bool) -> None:
    async def run() -> None:
        manager = Manager("redis", _config(private_redis, cache))
        browser = ASGIBrowser(ASGISessionMiddleware(_app_asgi, manager, autoload=autoload))
        try:
            assert isinstance(manager.provider, RedisProvider)
            if cache:
                await asyncio.to_thread(wait_live, manager.provider)
            await manager.provider.aread("0" * 32)  # warm up, as above
            await manager.provider.aupdate("0" * 32, Record(b"", time.time() + 1, 2), 1)
            _data_commands(command_log)
            assert await browser.aget("/write") == b"1"
            assert _data_commands(command_log) == ["SET"]
            assert await browser.aget("/untouched") == b"untouched"
            # Autoload reads the session of a request that sent an ID, used or not.
            read = [] if cache else ["GET"]
            assert _data_commands(command_log) == (read if autoload else [])
            assert await browser.aget("/read") == b"1"
            assert _data_commands(command_log) == read
            assert await browser.aget("/write") == b"2"
            assert _data_commands(command_log) == [*read, "EVALSHA"]
        finally:
            await manager.aclose()

    asyncio.run(run())


def test_a_read_refreshes_the_idle_deadline_once_it_is_due(
    private_redis: RedisServer, command_log: CommandLog
) -> None:
    # A read is one GET until a tenth of the idle span has passed; then the read script
    # moves the deadline (a second round trip, once per tenth of the span). A 2 s span:
    # the requests expected before the refresh is due have 200 ms on a loaded machine.
    manager = Manager("redis", {**_config(private_redis, False), "maxLifetime": 2})
    provider = manager.provider
    assert isinstance(provider, RedisProvider)
    browser = WSGIBrowser(WSGISessionMiddleware(_app_wsgi, manager))
    try:
        with private_redis.client() as client:
            client.script_load(redis_commands.READ.source)  # not its first use, below
        browser.get("/write")
        key = provider.key_prefix + browser.cookie.split("=", 1)[1]
        command_log.take()
        assert browser.get("/read") == b"1"  # just written: no refresh due yet
        assert (command_log.take(), command_log.scripted) == (["GET"], [])
        time.sleep(0.5)  # a quarter of the idle timeout: a refresh is due
        assert browser.get("/read") == b"1"
        assert command_log.take() == ["GET", "EVALSHA"]
        assert command_log.scripted == ["GET", "PTTL", "SET"]
        assert browser.get("/read") == b"1"  # refreshed: a GET again
        assert command_log.take() == ["GET"]
        with private_redis.client() as client:
            assert 1800 < client.pttl(key) <= 2000
        for _ in range(3):  # read-only requests alone keep it alive past its first deadline
            time.sleep(0.8)
            assert browser.get("/read") == b"1"
        time.sleep(2.2)
        assert manager.get_active_session() == 0  # Redis expired it: no GC pass needed
        assert manager.gc() == 0
        assert browser.get("/read") == b"None"
    finally:
        manager.close()


# -- pools and concurrency ------------------------------------------------------------------


def _clients(server: RedisServer) -> int:
    with server.client() as client:
        # Not this one, nor a client-side cache's tracking connection (pub/sub).
        return len(client.client_list(_type="normal")) - 1


def test_pool_is_bounded_and_callers_wait(private_redis: RedisServer) -> None:
    manager = Manager("redis", {"ProviderConfig": f"{HOST}:{private_redis.port},3"})
    try:
        browsers = [WSGIBrowser(WSGISessionMiddleware(_app_wsgi, manager)) for _ in range(24)]
        with ThreadPoolExecutor(24) as pool:
            for round_no in range(1, 4):  # 24 threads, 3 connections: the rest wait
                assert set(pool.map(lambda b: b.get("/write"), browsers)) == {
                    str(round_no).encode()}
        assert 1 <= _clients(private_redis) <= 3

        async def many() -> None:
            app = ASGISessionMiddleware(_app_asgi, manager)
            async_browsers = [ASGIBrowser(app) for _ in range(64)]
            for _ in range(3):
                await asyncio.gather(*(b.aget("/write") for b in async_browsers))
            assert {await b.aget("/read") for b in async_browsers} == {b"3"}
            assert 1 <= _clients(private_redis) <= 6  # 3 sync ones (idle), 3 async ones
            await manager.aclose()

        asyncio.run(many())
    finally:
        manager.close()


def test_connections_kept_between_commands_go_back_when_the_pool_is_full(
        private_redis: RedisServer) -> None:
    # The request path keeps the connections it used for its next commands. With
    # poolsize 2, two reads in flight at once (the server stalled) leave both kept: a
    # command that goes the usual way (count's SCAN) must still get one at once, and no
    # third connection is opened.
    provider = RedisProvider({"save_path": f"{HOST}:{private_redis.port}", "poolsize": 2,
                              "pool_timeout": 5, "client_cache": False})
    assert private_redis.process is not None
    pid = private_redis.process.pid

    async def in_flight_twice() -> None:
        with stopped(pid):
            reads = [asyncio.ensure_future(provider.aread("0" * 32)) for _ in range(2)]
            await asyncio.sleep(0.3)
        assert await asyncio.gather(*reads) == [None, None]
        started = time.monotonic()
        assert await provider.acount() == 0
        assert time.monotonic() - started < 1  # not pool_timeout
        assert _clients(private_redis) == 2
        await provider.aclose()

    try:
        with ThreadPoolExecutor(2) as threads, stopped(pid):
            reads = [threads.submit(provider.read, "0" * 32) for _ in range(2)]
            time.sleep(0.3)
        assert [read.result() for read in reads] == [None, None]
        started = time.monotonic()
        assert provider.count() == 0
        assert time.monotonic() - started < 1  # not pool_timeout
        assert _clients(private_redis) == 2
        provider.close()
        asyncio.run(in_flight_twice())
    finally:
        provider.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_kept_connection_the_server_closed_costs_no_error(private_redis: RedisServer,
                                                            mode: str) -> None:
    # An idle connection the server closed (its timeout, CLIENT KILL, a Sentinel
    # failover): the next command on it fails before any reply and goes again.
    manager = Manager("redis", _config(private_redis, False))
    with asyncio.Runner() as runner:
        client = Client(manager, mode, runner if mode == "async" else None)
        try:
            client.roundtrip(user="ann", n=1)
            with private_redis.client() as admin:
                assert admin.client_kill_filter(_type="normal", skipme=True) >= 1
            assert client.data() == {"user": "ann", "n": 1}
            client.roundtrip(n=2)
            assert client.data() == {"user": "ann", "n": 2}
        finally:
            if mode == "async":
                runner.run(manager.aclose())
            manager.close()


def test_two_servers_of_one_app_lose_nothing(local_redis: str, prefix: str) -> None:
    """Two managers with their own pools (two app processes) change one session at once."""
    config = {"ProviderConfig": f'{{"save_path": "{local_redis}", "key_prefix": "{prefix}"}}'}
    managers = [Manager("redis", config), Manager("redis", config)]
    try:
        first = WSGIBrowser(WSGISessionMiddleware(_app_wsgi, managers[0]))
        first.get("/write")
        barrier = threading.Barrier(40)

        def change(i: int) -> None:
            session = managers[i % 2].session_start({"HTTP_COOKIE": first.cookie})
            session.load()
            barrier.wait()
            session[f"k{i}"] = i
            session.session_release()

        with ThreadPoolExecutor(40) as pool:
            list(pool.map(change, range(40)))
        session = managers[1].session_start({"HTTP_COOKIE": first.cookie})
        assert dict(session) == {"n": 1, **{f"k{i}": i for i in range(40)}}
    finally:
        for manager in managers:
            manager.close()


# -- an outage ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_outage_raises_one_error_and_recovers(private_redis: RedisServer, mode: str) -> None:
    manager = Manager("redis", {"ProviderConfig": f"{HOST}:{private_redis.port},10"})
    with asyncio.Runner() as runner:
        client = Client(manager, mode, runner if mode == "async" else None)
        try:
            client.roundtrip(user="ann", n=1)
            private_redis.stop(kill=True)  # a crash
            with pytest.raises(StoreUnavailableError) as caught:
                client.data()
            assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
            session = client.begin()  # an outage between the read and the write
            private_redis.start()
            client.call(session.load, session.aload)
            private_redis.stop(kill=True)
            session["n"] = 2
            with pytest.raises(StoreUnavailableError):
                client.release(session)
            with pytest.raises(StoreUnavailableError):
                client.active()
            private_redis.start()  # back, same port: the same manager works again
            assert client.data() == {"user": "ann", "n": 1}
            client.roundtrip(n=3)
            assert client.data() == {"user": "ann", "n": 3}
            assert client.active() == 1
        finally:
            client.call(manager.close, manager.aclose)


def test_a_crash_mid_write_half_writes_nothing(private_redis: RedisServer) -> None:
    manager = Manager("redis", {"ProviderConfig": f"{HOST}:{private_redis.port},20"})
    owner = WSGIBrowser(WSGISessionMiddleware(_app_wsgi, manager))
    owner.get("/write")
    stop = threading.Event()
    outcomes: list[str] = []

    def writer(worker: int) -> None:
        for i in range(10_000):
            if stop.is_set():
                return
            session = manager.session_start({"HTTP_COOKIE": owner.cookie})
            try:
                session.load()
                # One request changes three keys and a large value: all or nothing.
                session[f"a{worker}.{i}"] = i
                session[f"b{worker}.{i}"] = i
                session[f"blob{worker}"] = "x" * 20_000 + str(i)
                session.session_release()
                outcomes.append("saved")
            except StoreUnavailableError:
                outcomes.append("unavailable")
                time.sleep(0.01)

    try:
        with ThreadPoolExecutor(6) as pool:
            futures = [pool.submit(writer, w) for w in range(6)]
            time.sleep(0.4)
            private_redis.stop(kill=True)  # SIGKILL while writes are in flight
            saved_before = outcomes.count("saved")
            time.sleep(1)  # longer than the client's retries: requests must fail
            private_redis.start()
            wait_for(lambda: outcomes.count("saved") > saved_before + 10, 10,
                     "writes to succeed again")
            stop.set()
            for future in futures:
                future.result()  # any error but StoreUnavailableError would surface here
        assert saved_before > 0 and "unavailable" in outcomes
        session = manager.session_start({"HTTP_COOKIE": owner.cookie})
        data = dict(session)
        assert data["n"] == 1  # the record decodes: neither torn nor lost
        for key, value in data.items():
            if key.startswith("a"):
                assert data["b" + key[1:]] == value
            if key.startswith("b") and not key.startswith("blob"):
                assert data["a" + key[1:]] == value
        for worker in range(6):
            blob = data.get(f"blob{worker}")
            assert blob is None or blob.startswith("x" * 20_000)
    finally:
        stop.set()
        manager.close()


# -- the cluster --------------------------------------------------------------------------


def _drop_cluster_keys(servers: ClusterServers, prefix: str) -> None:
    for server in servers.masters:
        with server.client() as client:
            for key in client.scan_iter(match=prefix + "*", count=1000):
                client.delete(key)  # one by one: keys of different slots


def _keys_per_master(servers: ClusterServers, prefix: str) -> list[int]:
    counts = []
    for server in servers.masters:
        with server.client() as client:
            counts.append(sum(1 for _ in client.scan_iter(match=prefix + "*", count=1000)))
    return counts


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_cluster_spreads_sessions_and_regenerates_across_slots(
    redis_cluster: ClusterServers, prefix: str, mode: str
) -> None:
    provider = RedisClusterProvider(redis_cluster.seeds, key_prefix=prefix)
    manager = Manager(provider)
    with asyncio.Runner() as runner:
        try:
            clients = [Client(manager, mode, runner) for _ in range(60)]
            for i, client in enumerate(clients):
                client.roundtrip(i=i)
            per_master = _keys_per_master(redis_cluster, prefix)
            assert len(per_master) == 3 and all(per_master), per_master
            assert sum(per_master) == 60 == clients[0].active()
            moved = 0
            for i, client in enumerate(clients[:20]):
                old = client.cookie
                assert old is not None
                session = client.open()
                client.regenerate(session)
                client.release(session)
                assert client.cookie not in (None, old)
                moved += key_slot((prefix + old).encode()) != key_slot(
                    (prefix + str(client.cookie)).encode())
                assert client.data() == {"i": i}
            assert moved > 0  # regenerate crossed slots, where RENAME would have failed
            assert sum(_keys_per_master(redis_cluster, prefix)) == 60
        finally:
            if mode == "async":
                runner.run(manager.aclose())
            manager.close()
            _drop_cluster_keys(redis_cluster, prefix)


def test_cluster_waits_for_its_bounded_pool(redis_cluster: ClusterServers,
                                            prefix: str) -> None:
    manager = Manager(RedisClusterProvider(f"{redis_cluster.seeds},2", key_prefix=prefix))

    async def burst() -> None:
        app = ASGISessionMiddleware(_app_asgi, manager)
        browsers = [ASGIBrowser(app) for _ in range(50)]
        for _ in range(2):
            await asyncio.gather(*(b.aget("/write") for b in browsers))
        assert {await b.aget("/read") for b in browsers} == {b"2"}
        assert await manager.aget_active_session() == 50
        await manager.aclose()

    try:
        asyncio.run(burst())
        browsers = [WSGIBrowser(WSGISessionMiddleware(_app_wsgi, manager)) for _ in range(16)]
        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(lambda b: b.get("/write"), browsers)) == {b"1"}
        assert manager.get_active_session() == 66
    finally:
        manager.close()
        _drop_cluster_keys(redis_cluster, prefix)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_cluster_count_walks_each_master_to_its_end(
    redis_cluster: ClusterServers, prefix: str, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of a few keys: every master needs several SCANs after the cluster-wide first.
    monkeypatch.setattr(redis_commands, "SCAN_COUNT", 4)
    provider = RedisClusterProvider(redis_cluster.seeds, key_prefix=prefix)
    try:
        for i in range(90):
            assert provider.create(f"{i:032x}", Record(b"x", time.time() + 60, 1))
        assert all(n > 12 for n in _keys_per_master(redis_cluster, prefix))
        if mode == "sync":
            assert provider.count() == 90
        else:
            async def count() -> int:
                try:
                    return await provider.acount()
                finally:
                    await provider.aclose()

            assert asyncio.run(count()) == 90
    finally:
        provider.close()
        _drop_cluster_keys(redis_cluster, prefix)


# -- Sentinel: a failover in the middle of a run ------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sessions_survive_a_sentinel_failover(redis_sentinel: SentinelServers, prefix: str,
                                              mode: str) -> None:
    manager = Manager(RedisSentinelProvider(
        f'{{"save_path": "{redis_sentinel.addresses}", "master_name": "mymaster", '
        f'"key_prefix": "{prefix}"}}'))
    with asyncio.Runner() as runner:
        clients = [Client(manager, mode, runner if mode == "async" else None)
                   for _ in range(20)]
        try:
            for i, client in enumerate(clients):
                client.roundtrip(i=i)
            # Replication is asynchronous: what is not on the replica yet may be lost.
            redis_sentinel.replicate()
            before = redis_sentinel.master_port()
            # Keep serving while the sentinels switch masters.
            errors: list[BaseException] = []
            switched = threading.Event()

            def failover() -> None:
                try:
                    redis_sentinel.failover()
                except BaseException as exc:  # reported below, not lost in the thread
                    errors.append(exc)
                finally:
                    switched.set()

            thread = threading.Thread(target=failover)
            thread.start()
            served = 0
            while not switched.is_set():
                for i, client in enumerate(clients):
                    try:
                        assert client.data() == {"i": i}
                        served += 1
                    except StoreUnavailableError:
                        pass  # the one error an app may see meanwhile: it answers 503
            thread.join()
            assert served > 0  # requests ran while the masters switched
            assert not errors, errors
            assert redis_sentinel.master_port() != before
            for i, client in enumerate(clients):  # written before, readable after
                assert client.data() == {"i": i}
            clients[0].roundtrip(after=True)
            assert clients[0].data() == {"i": 0, "after": True}
            assert clients[0].active() == 20
        finally:
            if mode == "async":
                runner.run(manager.aclose())
            manager.close()


def test_async_clients_follow_the_event_loop(local_redis: str, prefix: str) -> None:
    provider = RedisProvider(local_redis, key_prefix=prefix)
    sid = "b2" * 16

    async def use(create: bool) -> Any:
        if create:
            await provider.acreate(sid, Record(b"x", time.time() + 60, 1))
        return await provider.aread(sid)

    # Each asyncio.run is a new loop: a client bound to the last one must not be reused.
    for create in (True, False, False):
        with asyncio.Runner() as runner:
            assert runner.run(use(create)) is not None
            runner.run(provider.aclose())
    # aclose() closed each loop's client and let it go.
    loops = provider._clients._aclients.take_all()
    assert len(loops) <= 3 and all(entry.client is None for entry in loops.values())
    provider.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_read_says_when_it_moved_the_deadline(local_redis: str, prefix: str,
                                                mode: str) -> None:
    provider = RedisProvider(local_redis, key_prefix=prefix)
    sid = ("c3" if mode == "sync" else "d4") * 16
    with asyncio.Runner() as runner:
        def read() -> Record | None:
            if mode == "sync":
                return provider.read(sid)
            return runner.run(provider.aread(sid))

        try:
            written = Record(b"x", time.time() + 1, 1)  # an idle span of one second
            assert provider.create(sid, written)
            fresh = read()
            assert fresh is not None and not fresh.refreshed  # a tenth has not passed yet
            assert fresh.expires_at == written.expires_at
            time.sleep(0.2)
            moved = read()
            assert moved is not None and moved.refreshed
            assert (moved.payload, moved.version) == (b"x", 1)
            assert moved.expires_at - written.expires_at == pytest.approx(0.2, abs=0.05)
            again = read()  # the deadline it moved reads back, not refreshed again
            assert again is not None and not again.refreshed
            assert again.expires_at == moved.expires_at
        finally:
            runner.run(provider.aclose())
            provider.close()



def test_read_refresh_slides_a_persistent_cookie(local_redis: str, prefix: str) -> None:
    manager = Manager(RedisProvider(local_redis, key_prefix=prefix),
                      max_lifetime=20, cookie_life_time=600)

    def request(cookie: str | None, write: bool) -> list[str]:
        environ: dict[str, Any] = {"REQUEST_METHOD": "GET"}
        if cookie:
            environ["HTTP_COOKIE"] = cookie
        session = manager.session_start(environ)
        if write:
            session["n"] = 1
        else:
            assert session["n"] == 1
        headers: list[tuple[str, str]] = []
        session.session_release(headers)
        return [v for k, v in headers if k == "Set-Cookie"]

    try:
        (set_cookie,) = request(None, write=True)
        cookie = set_cookie.split(";", 1)[0]
        time.sleep(2.1)  # past a tenth of the idle timeout: the read refreshes the TTL
        (slid,) = request(cookie, write=False)
        assert slid.startswith(cookie + ";")
        assert "Max-Age=600" in slid
        time.sleep(1.1)  # not due again: no refresh, so no cookie either
        assert request(cookie, write=False) == []
    finally:
        manager.close()
