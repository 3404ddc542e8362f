"""The memcached provider against real servers: the conformance suite on the memcached at
127.0.0.1:11211 (a key prefix of its own per test), the configuration forms, counting
among other applications' items, two servers, and an outage of a private server."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pymemcache.client.base import Client as MemcacheClient
from tests.redis_servers import free_port
from tests.servers import require_server, unavailable

import websession.providers.memcached as memcached_provider
from websession import (
    ConfigurationError,
    Manager,
    MissingDependencyError,
    SerializationError,
    StoreUnavailableError,
)
from websession.providers.base import Record
from websession.providers.memcached import (
    RELATIVE_EXPIRY_LIMIT,
    MemcachedProvider,
    parse_memcached_config,
)
from websession.testing import Client, ProviderConformance

HOST = "127.0.0.1"


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test's own."""
    return f"wstest:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def local_memcached() -> str:
    """The address of the memcached on 127.0.0.1:11211 (`make test` starts it)."""
    require_server("memcached", HOST, 11211)
    return f"{HOST}:11211"


class PrivateMemcached:
    """A ``memcached`` of a test's own on a free loopback port; :meth:`stop` kills it."""

    def __init__(self) -> None:
        binary = shutil.which("memcached") or "/usr/bin/memcached"
        if not os.access(binary, os.X_OK):
            unavailable("memcached is not installed: a private server cannot start")
        self.binary = binary
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it accepts connections."""
        user = "memcache" if _user_exists("memcache") else "root"
        self.process = subprocess.Popen(
            [self.binary, "-u", user, "-l", HOST, "-p", str(self.port), "-U", "0", "-m", "16"])
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"memcached did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill it (a crash, not a shutdown) and wait for it."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture
def private_memcached() -> Iterator[PrivateMemcached]:
    server = PrivateMemcached()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the conformance suite ------------------------------------------------------------------


class TestMemcachedConformance(ProviderConformance):
    @pytest.fixture
    def provider(self, local_memcached: str, prefix: str) -> MemcachedProvider:
        return MemcachedProvider(local_memcached, key_prefix=prefix)


# -- configuration --------------------------------------------------------------------------


def test_beego_address_list_json_and_defaults() -> None:
    beego = parse_memcached_config("127.0.0.1:11211;127.0.0.1:11212")
    assert beego.servers == (("127.0.0.1", 11211), ("127.0.0.1", 11212))
    assert parse_memcached_config("cache").servers == (("cache", 11211),)
    default = parse_memcached_config("")
    assert (default.servers, default.key_prefix, default.timeout) == (
        (("127.0.0.1", 11211),), "websession:", 5.0)
    options = parse_memcached_config(
        '{"servers": ["a:1", "[::1]:2"], "keyPrefix": "app:", "timeout": "250ms", '
        '"connect_timeout": 2, "poolSize": 7}')
    assert (options.servers, options.key_prefix, options.timeout, options.connect_timeout,
            options.pool_size) == ((("a", 1), ("::1", 2)), "app:", 0.25, 2.0, 7)
    assert parse_memcached_config({"servers": "a:1;b:2"}).servers == (("a", 1), ("b", 2))


@pytest.mark.parametrize(("config", "key"), [
    ("a:port", "providerConfig"),
    (" ; ", "providerConfig"),
    ('{"servers": []}', "servers"),
    ('{"servers": [1]}', "servers"),
    ('{"keyPrefix": "has space"}', "keyPrefix"),
    ('{"timeout": "soon"}', "timeout"),
    ('{"timeout": 0}', "timeout"),
    ('{"poolSize": 0}', "poolSize"),
    ('{"colour": 1}', "colour"),
    ("{not json", "providerConfig"),
])
def test_malformed_config_names_the_key(config: str, key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_memcached_config(config)
    assert caught.value.key == key


def test_registered_names_and_manager_config(local_memcached: str, prefix: str) -> None:
    for name in ("memcached", "memcache"):  # ours, and beego's
        manager = Manager(name, {"ProviderConfig": f'{{"servers": "{local_memcached}", '
                                                   f'"keyPrefix": "{prefix}"}}'})
        try:
            assert isinstance(manager.provider, MemcachedProvider)
            assert manager.provider.key_prefix == prefix
            assert manager.get_active_session() == 0
        finally:
            manager.close()


def test_missing_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymemcache.client.base", None)
    monkeypatch.delitem(sys.modules, "websession.providers.memcached")
    with pytest.raises(MissingDependencyError, match=r"websession\[memcached\]"):
        importlib.import_module("websession.providers.memcached")


# -- expiry and counting --------------------------------------------------------------------


def test_expiry_past_thirty_days_is_an_absolute_unix_time() -> None:
    now = time.time()
    assert 60 <= memcached_provider._expiry(now + 60) <= 62
    month = memcached_provider._expiry(now + 29 * 86400)
    assert month <= RELATIVE_EXPIRY_LIMIT  # still seconds from now
    far = memcached_provider._expiry(now + 90 * 86400)
    assert abs(far - (now + 90 * 86400)) <= 2  # a Unix time: memcached reads it so
    assert memcached_provider._expiry(now - 5) == 1  # a dead record still gets an expiry


def test_a_session_months_long_lives_on_the_server(local_memcached: str, prefix: str) -> None:
    provider = MemcachedProvider(local_memcached, key_prefix=prefix)
    later = time.time() + 60 * 86400
    try:
        assert provider.create("m" * 32, Record(b"long", later, 1))
        assert provider.read("m" * 32) == Record(b"long", later, 1)  # not expired at once
    finally:
        provider.delete("m" * 32)
        provider.close()


def test_count_sees_only_this_providers_live_sessions(local_memcached: str,
                                                      prefix: str) -> None:
    provider = MemcachedProvider(local_memcached, key_prefix=prefix)
    other = MemcacheClient((HOST, 11211))
    later = time.time() + 60
    try:
        other.set(f"other:{prefix}x", b"1:9e99:not ours", 60)  # another application's item
        other.set(f"{prefix}damaged", b"garbage", 60)  # ours by name, but no record
        for i in range(3):
            assert provider.create(f"s{i}" + "0" * 31, Record(b"x", later, 1))
        assert provider.create("dead" + "0" * 28, Record(b"x", time.time() + 0.2, 1))
        assert provider.count() == 4
        time.sleep(0.4)
        assert provider.count() == 3  # the dead one no longer counts, before memcached drops it
        assert asyncio.run(provider.acount()) == 3
    finally:
        other.close()
        provider.close()


def test_create_replaces_a_dead_record_memcached_still_holds(local_memcached: str,
                                                             prefix: str) -> None:
    provider = MemcachedProvider(local_memcached, key_prefix=prefix)
    sid = "e" * 32
    try:
        assert provider.create(sid, Record(b"old", time.time() + 0.2, 1))
        time.sleep(0.3)  # past its deadline; memcached keeps it up to two seconds more
        assert provider.read(sid) is None
        assert provider.update(sid, Record(b"back", time.time() + 60, 2), 1) is False
        assert provider.touch(sid, time.time() + 60) is False  # never resurrected
        later = time.time() + 60
        assert provider.create(sid, Record(b"new", later, 1))
        assert provider.read(sid) == Record(b"new", later, 1)
    finally:
        provider.close()


# -- two servers ----------------------------------------------------------------------------


def test_sessions_spread_over_servers_and_both_modes_agree(prefix: str) -> None:
    first, second = PrivateMemcached(), PrivateMemcached()
    first.start()
    second.start()
    config = f"{HOST}:{first.port};{HOST}:{second.port}"
    sync_side = MemcachedProvider(config, key_prefix=prefix)
    async_side = MemcachedProvider(config, key_prefix=prefix)
    later = time.time() + 60
    sids = [uuid.uuid4().hex for _ in range(40)]
    try:
        for i, sid in enumerate(sids):
            assert sync_side.create(sid, Record(b"%d" % i, later, 1))

        async def read_all() -> list[Record | None]:
            try:
                return list(await asyncio.gather(*(async_side.aread(s) for s in sids)))
            finally:
                await async_side.aclose()

        records = asyncio.run(read_all())
        assert [r.payload if r else None for r in records] == [b"%d" % i for i in range(40)]
        per_server = []
        for server in (first, second):
            stats = MemcacheClient((HOST, server.port))
            per_server.append(stats.stats()[b"curr_items"])
            stats.close()
        assert sum(per_server) == 40 and min(per_server) > 5  # both servers hold sessions
        assert sync_side.count() == 40
    finally:
        sync_side.close()
        first.stop()
        second.stop()


# -- an outage ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_outage_raises_store_unavailable_and_recovers(private_memcached: PrivateMemcached,
                                                      mode: str) -> None:
    config: dict[str, Any] = {"ProviderConfig": f'{{"servers": "{HOST}:{private_memcached.port}"'
                                                f', "timeout": 2, "connectTimeout": 2}}'}
    manager = Manager("memcached", config)
    with asyncio.Runner() as runner:
        client = Client(manager, mode, runner if mode == "async" else None)
        try:
            client.roundtrip(user="ann", n=1)
            private_memcached.stop()  # a crash
            with pytest.raises(StoreUnavailableError):
                client.data()
            session = client.begin()
            with pytest.raises(StoreUnavailableError):
                client.call(session.load, session.aload)
            with pytest.raises(StoreUnavailableError):
                client.active()
            private_memcached.start()  # back, same port, empty: the same manager works again
            assert client.data() == {}
            client.roundtrip(n=3)
            assert client.data() == {"n": 3}
            assert client.active() == 1
        finally:
            client.call(manager.close, manager.aclose)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_server_that_never_answers_times_out(mode: str) -> None:
    port = free_port()
    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind((HOST, port))
        silent.listen(16)
        provider = MemcachedProvider(f'{{"servers": "{HOST}:{port}", "timeout": "300ms"}}')
        manager = Manager(provider)
        with asyncio.Runner() as runner:
            client = Client(manager, mode, runner if mode == "async" else None,
                            cookie="f" * 32)
            started = time.monotonic()
            try:
                with pytest.raises(StoreUnavailableError):
                    client.data()
                assert time.monotonic() - started < 3
            finally:
                client.call(manager.close, manager.aclose)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_session_too_large_for_an_item_is_a_clear_error(local_memcached: str, prefix: str,
                                                          mode: str) -> None:
    provider = MemcachedProvider(local_memcached, key_prefix=prefix)
    with asyncio.Runner() as runner:
        client = Client(Manager(provider), mode, runner if mode == "async" else None)
        try:
            with pytest.raises(SerializationError, match="memcached keeps in one item"):
                client.roundtrip(blob="x" * 2_000_000)
            client.roundtrip(small=1)  # the same provider goes on working
            assert client.data() == {"small": 1}
        finally:
            client.call(provider.close, provider.aclose)


# -- the CAS token a read got ----------------------------------------------------------------


def _stats(port: int) -> dict[str, int]:
    client = MemcacheClient((HOST, port))
    try:
        return {k.decode(): int(v) for k, v in client.stats().items()
                if k in (b"cmd_get", b"cmd_set", b"cas_hits", b"cas_badval", b"cas_misses")}
    finally:
        client.close()


def test_a_read_modify_write_is_two_round_trips(private_memcached: PrivateMemcached) -> None:
    manager = Manager("memcached", {"ProviderConfig": f"{HOST}:{private_memcached.port}"})
    session = manager.session_start({})
    session["n"] = 0
    session.session_release([])
    sid = session.session_id()
    before = _stats(private_memcached.port)
    for n in range(1, 11):
        session = manager.session_start({"HTTP_COOKIE": f"gosessionid={sid}"})
        session["n"] = n
        session.session_release([])
    after = _stats(private_memcached.port)
    spent = {k: after[k] - before[k] for k in after}
    # One gets to read, one cas (with the read's token) to write: no second gets.
    assert spent == {"cmd_get": 10, "cmd_set": 10, "cas_hits": 10, "cas_badval": 0,
                     "cas_misses": 0}
    assert manager.get_session_store(sid)["n"] == 10
    manager.close()


@pytest.mark.parametrize("meanwhile", ["update", "touch", "delete"])
def test_a_remembered_token_never_overwrites_a_change_it_did_not_see(
    local_memcached: str, prefix: str, meanwhile: str
) -> None:
    ours = MemcachedProvider(local_memcached, key_prefix=prefix)
    other = MemcachedProvider(local_memcached, key_prefix=prefix)  # another process
    try:
        later = time.time() + 600
        sid = uuid.uuid4().hex
        assert ours.create(sid, Record(b"v1", later, 1))
        assert ours.read(sid) == Record(b"v1", later, 1)  # remembers the item's token
        if meanwhile == "update":
            assert other.update(sid, Record(b"theirs", later, 2), 1)
        elif meanwhile == "touch":
            assert other.touch(sid, later + 60)  # the same version, but the item changed
        else:
            other.delete(sid)
        assert ours.update(sid, Record(b"ours", later, 2), 1) is False  # memcached refused
        current = ours.read(sid)  # what the engine does next: read again, re-apply
        if meanwhile == "delete":
            assert current is None  # never resurrected
            return
        assert current is not None
        assert current.payload == (b"theirs" if meanwhile == "update" else b"v1")
        assert ours.update(sid, Record(b"ours", later, current.version + 1), current.version)
        assert other.read(sid) == Record(b"ours", later, current.version + 1)
    finally:
        ours.close()
        other.close()


async def test_the_async_path_uses_the_token_too(local_memcached: str, prefix: str) -> None:
    provider = MemcachedProvider(local_memcached, key_prefix=prefix)
    later = time.time() + 600
    sid = uuid.uuid4().hex
    assert await provider.acreate(sid, Record(b"v1", later, 1))
    assert await provider.aread(sid) == Record(b"v1", later, 1)
    assert provider.read(sid) is not None  # a sync read in between: a token of the same item
    assert await provider.aupdate(sid, Record(b"v2", later, 2), 1)
    assert await provider.aupdate(sid, Record(b"v3", later, 3), 1) is False
    assert await provider.aread(sid) == Record(b"v2", later, 2)
    await provider.aclose()
    provider.close()
