"""The Redis providers' operations against real servers: the user index kept consistent
with Redis's own expiry, batch creation on one server and on a cluster, and ``expired``
events from keyspace notifications of a private server started with them on."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.crc import key_slot
from tests.redis_servers import (
    HOST,
    ClusterServers,
    RedisServer,
    SentinelServers,
    free_port,
    require_redis_binaries,
    wait_for,
)
from tests.servers import require_server
from tests.test_redis_provider import (  # noqa: F401 - the run's shared servers
    redis_cluster,
    redis_sentinel,
)

from websession import Manager
from websession.providers._redis_ops import INDEX_PREFIX, PRUNE_AT
from websession.providers.base import Record
from websession.providers.redis import RedisClusterProvider, RedisProvider


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own on the shared server; its keys (and its index's)
    are removed after."""
    require_server("Redis", HOST, 6379)
    prefix = f"wsops:{uuid.uuid4().hex[:12]}:"
    yield prefix
    with redis.Redis(HOST, 6379) as client:
        for pattern in (prefix + "*", INDEX_PREFIX + prefix + "*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)


def _server(tmp_path: Path, *args: str) -> RedisServer:
    require_redis_binaries()
    return RedisServer(tmp_path / "redis", free_port(), *args).start()


def _login(manager: Manager, user: str, **values: Any) -> str:
    session = manager.get_session_store(None)
    session.bind_user(user)
    for key, value in values.items():
        session[key] = value
    session.session_release([])
    return session.session_id()


def test_the_index_lives_outside_the_sessions_and_follows_their_expiry(prefix: str) -> None:
    config = {"providerConfig": {"addr": f"{HOST}:6379", "prefix": prefix},
              "maxLifetime": 1, "absoluteLifetime": 60}
    with Manager("redis", config) as manager, redis.Redis(HOST, 6379) as client:
        short = [_login(manager, "ann") for _ in range(3)]
        assert manager.get_active_session() == 3  # the index keys are not counted
        user_key = f"{INDEX_PREFIX}{prefix}u:ann"
        assert client.zcard(user_key) == 3
        # The index outlives every session bound to it: the absolute lifetime.
        assert 55_000 < client.pttl(user_key) <= 60_000
        assert [info.sid for info in manager.sessions_of("ann")] == short
        time.sleep(1.2)  # Redis expires the sessions by itself
        assert manager.sessions_of("ann") == []
        assert client.zcard(user_key) == 0  # members found dead were dropped
        assert not client.exists(f"{INDEX_PREFIX}{prefix}s:{short[0]}")


def test_dead_members_do_not_count_against_the_cap(prefix: str) -> None:
    base = {"providerConfig": {"addr": f"{HOST}:6379", "prefix": prefix},
            "maxSessionsPerUser": 2}
    with Manager("redis", {**base, "maxLifetime": 1}) as short, Manager("redis", base) as long:
        _login(short, "ann")  # bound first, gone in a second
        kept = _login(long, "ann")
        time.sleep(1.2)
        newest = _login(long, "ann")
        # The dead member was dropped rather than counted: both live logins stay.
        assert [info.sid for info in long.sessions_of("ann")] == [kept, newest]
        assert long.stats()["destroyed"] == 0


def test_without_a_cap_a_login_prunes_a_full_set(prefix: str) -> None:
    base = {"providerConfig": {"addr": f"{HOST}:6379", "prefix": prefix}}
    with Manager("redis", {**base, "maxLifetime": 1}) as short, Manager("redis", base) as long, \
            redis.Redis(HOST, 6379) as client:
        for _ in range(PRUNE_AT):
            _login(short, "ann")
        time.sleep(1.2)
        sid = _login(long, "ann")
        assert client.zrange(f"{INDEX_PREFIX}{prefix}u:ann", 0, -1) == [sid.encode()]


@pytest.mark.parametrize("topology", ["server", "cluster"])
def test_create_many_skips_live_ids_and_binds(topology: str, prefix: str,
                                              request: pytest.FixtureRequest) -> None:
    if topology == "server":
        provider: RedisProvider | RedisClusterProvider = RedisProvider(
            f"{HOST}:6379", key_prefix=prefix)
    else:
        servers: ClusterServers = request.getfixturevalue("redis_cluster")
        provider = RedisClusterProvider(servers.seeds, key_prefix=prefix)
    later = time.time() + 60
    provider.create("a" * 32, Record(b"kept", later, 7))
    records = [("a" * 32, Record(b"new", later, 1), "ann"),
               *((f"{i:032x}", Record(b"new", later, 1), "ann" if i % 2 else None)
                 for i in range(10))]
    assert provider.create_many(records) == 10
    assert provider.read("a" * 32) == Record(b"kept", later, 7)
    assert provider.read(f"{3:032x}") == Record(b"new", later, 1)
    assert provider.create_many(records) == 0  # a rerun creates nothing
    bound = [sid for sid, _ in provider.sessions_of("ann")]
    assert sorted(bound) == sorted(["a" * 32] + [f"{i:032x}" for i in range(1, 10, 2)])

    async def in_a_loop() -> int:
        try:
            return await provider.acreate_many([("b" * 32, Record(b"b", later, 1), None)])
        finally:
            await provider.aclose()

    assert asyncio.run(in_a_loop()) == 1
    assert provider.count() == 12
    provider.close()


def test_expired_events_from_keyspace_notifications(tmp_path: Path) -> None:
    server = _server(tmp_path, "--notify-keyspace-events", "Ex")
    try:
        config = {"providerConfig": f"{HOST}:{server.port}", "maxLifetime": 1}
        with Manager("redis", config) as manager:
            seen: list[tuple[int, list[str]]] = []
            done = threading.Event()

            def expired(count: int, ids: list[str]) -> None:
                seen.append((count, ids))
                if sum(n for n, _ in seen) >= 3:
                    done.set()

            manager.on("expired", expired)
            sids = {_login(manager, "ann") for _ in range(3)}
            with server.client() as client:
                client.set("unrelated", "x", px=10)  # not a session: not reported
            assert done.wait(10), seen
            assert {sid for _, ids in seen for sid in ids} == sids
            assert manager.stats()["expired"] == 3
            manager.off("expired", expired)
    finally:
        server.stop(kill=True)


def test_a_server_without_notifications_is_named_in_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = _server(tmp_path)
    try:
        with Manager("redis", {"providerConfig": f"{HOST}:{server.port}"}) as manager:
            with caplog.at_level(logging.WARNING, logger="websession"):
                manager.on("expired", lambda count, ids: None)
            assert "notify-keyspace-events" in caplog.text
    finally:
        server.stop(kill=True)


def test_expired_events_survive_a_restart_of_the_server(tmp_path: Path) -> None:
    server = _server(tmp_path, "--notify-keyspace-events", "Ex")
    try:
        config = {"providerConfig": f"{HOST}:{server.port}", "maxLifetime": 1}
        with Manager("redis", config) as manager:
            seen: list[str] = []
            manager.on("expired", lambda count, ids: seen.extend(ids))
            server.stop(kill=True)
            server.start()
            time.sleep(1.5)  # the watcher waits a second between attempts
            sid = _login(manager, "bob")
            wait_for(lambda: sid in seen, 10, "the expired event after a restart")
    finally:
        server.stop(kill=True)


def test_expired_events_from_every_master_of_a_cluster(request: pytest.FixtureRequest) -> None:
    cluster: ClusterServers = request.getfixturevalue("redis_cluster")
    prefix = f"wsops:{uuid.uuid4().hex[:12]}:"
    for server in cluster.masters:  # the test run's own cluster: its config is ours
        with server.client() as client:
            client.config_set("notify-keyspace-events", "Ex")
    try:
        config = {"providerConfig": {"save_path": cluster.seeds, "prefix": prefix},
                  "maxLifetime": 1}
        with Manager("redis_cluster", config) as manager:
            seen: set[str] = set()
            manager.on("expired", lambda count, ids: seen.update(ids))
            sids = {_login(manager, "ann") for _ in range(12)}
            keys = [f"{prefix}{sid}" for sid in sids]
            slots = {key_slot(key.encode()) for key in keys}
            assert len(slots) > 1  # spread over the cluster
            wait_for(lambda: seen >= sids, 10, "an expired event for every session")
            assert seen == sids
    finally:
        for server in cluster.masters:
            with server.client() as client:
                client.config_set("notify-keyspace-events", "")


def test_expired_events_from_the_master_sentinel_names(request: pytest.FixtureRequest) -> None:
    sentinel: SentinelServers = request.getfixturevalue("redis_sentinel")
    servers = [sentinel.master, sentinel.replica]  # either may be the master by now
    for server in servers:  # the test run's own servers: their config is ours
        with server.client() as client:
            client.config_set("notify-keyspace-events", "Ex")
    try:
        config = {"providerConfig": f"{sentinel.addresses},100,,0,mymaster",
                  "maxLifetime": 1}
        with Manager("redis_sentinel", config) as manager:
            seen: set[str] = set()
            manager.on("expired", lambda count, ids: seen.update(ids))
            sids = {_login(manager, "ann") for _ in range(3)}
            wait_for(lambda: seen >= sids, 10, "an expired event for every session")
            assert seen == sids
    finally:
        for server in servers:
            with server.client() as client:
                client.config_set("notify-keyspace-events", "")
