"""The Redis providers' client-side cache against real servers: what a request costs with
it, that a stale entry never loses an update (worker processes sharing one session), that
another process's change is seen once its invalidation is processed, that a lost tracking
connection or a failover flushes it, its bounds, and its configuration."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

import pytest
import redis
from tests.redis_servers import HOST, CommandLog, RedisServer, SentinelServers, wait_for
from tests.test_redis_provider import (
    WSGIBrowser,
    _app_wsgi,
    _data_commands,
    command_log,
    local_redis,
    prefix,
    private_redis,
    redis_sentinel,
    wait_live,
)

from websession import ConfigurationError, Manager, WSGISessionMiddleware
from websession.providers._redis_commands import READ
from websession.providers.base import Record
from websession.providers.redis import (
    RedisClusterProvider,
    RedisProvider,
    RedisSentinelProvider,
    parse_redis_config,
)

__all__ = ["command_log", "local_redis", "prefix", "private_redis", "redis_sentinel"]


def _provider(address: str, prefix: str, **options: Any) -> RedisProvider:
    provider = RedisProvider({"save_path": address, "key_prefix": prefix, **options})
    wait_live(provider)
    return provider


def _stats(provider: RedisProvider | RedisSentinelProvider) -> dict[str, Any]:
    stats = provider.cache_stats()
    assert stats is not None
    return stats


# -- configuration ------------------------------------------------------------------------


def test_on_by_default_and_configurable() -> None:
    assert parse_redis_config("127.0.0.1:6379").client_cache.enabled
    options = parse_redis_config('{"save_path": "127.0.0.1:6379", "clientCache": false}')
    assert not options.client_cache.enabled
    options = parse_redis_config({"client_cache_entries": 5, "client_cache_bytes": 4096})
    assert (options.client_cache.enabled, options.client_cache.max_entries,
            options.client_cache.max_bytes) == (True, 5, 4096)
    sentinel = parse_redis_config("127.0.0.1:26379", "redis_sentinel")
    assert sentinel.client_cache.enabled
    assert not parse_redis_config("127.0.0.1:7000", "redis_cluster").client_cache.enabled
    provider = RedisProvider({"client_cache": False})
    assert provider.cache_stats() is None and provider.client_cache is None
    provider.close()


@pytest.mark.parametrize(("provider", "config", "names"), [
    ("redis", {"client_cache": "yes"}, "client_cache"),
    ("redis", {"client_cache_entries": 0}, "client_cache_entries"),
    ("redis", {"client_cache_bytes": -1}, "client_cache_bytes"),
    ("redis_cluster", {"save_path": "127.0.0.1:7000", "client_cache": True}, "client_cache"),
])
def test_bad_cache_settings_are_named(provider: str, config: Any, names: str) -> None:
    with pytest.raises(ConfigurationError, match=names):
        parse_redis_config(config, provider)


def test_a_cluster_does_not_cache() -> None:
    provider = RedisClusterProvider("127.0.0.1:7000")
    assert provider.cache_stats() is None
    provider.close()


# -- what a request costs -----------------------------------------------------------------


def test_a_read_is_free_until_its_refresh_is_due(private_redis: RedisServer,
                                                command_log: CommandLog) -> None:
    manager = Manager("redis", {"ProviderConfig": {"save_path": f"{HOST}:{private_redis.port}"},
                                "maxLifetime": 1})
    provider = manager.provider
    assert isinstance(provider, RedisProvider)
    wait_live(provider)
    browser = WSGIBrowser(WSGISessionMiddleware(_app_wsgi, manager))
    try:
        with private_redis.client() as client:
            client.script_load(READ.source)  # not its first use, below
        browser.get("/write")
        key = provider.key_prefix + browser.cookie.split("=", 1)[1]
        _data_commands(command_log)
        assert browser.get("/read") == b"1"  # what this process wrote: from the cache
        assert _data_commands(command_log) == []
        time.sleep(0.25)  # a quarter of the idle timeout: the refresh is due
        assert browser.get("/read") == b"1"
        # The cached copy says the refresh is due: the read script alone moves it.
        assert _data_commands(command_log) == ["EVALSHA"]
        assert command_log.scripted == ["GET", "PTTL", "SET"]
        with private_redis.client() as client:
            assert 900 < client.pttl(key) <= 1000
        command_log.take()
        assert browser.get("/read") == b"1"  # the refreshed record: cached again
        assert _data_commands(command_log) == []
        assert _stats(provider)["hits"] >= 2
    finally:
        manager.close()


# -- correctness --------------------------------------------------------------------------


def test_a_stale_entry_costs_a_retry_never_an_update(local_redis: str, prefix: str) -> None:
    config = {"ProviderConfig": {"save_path": local_redis, "key_prefix": prefix}}
    ours, theirs = Manager("redis", config), Manager("redis", config)
    try:
        provider = ours.provider
        assert isinstance(provider, RedisProvider)
        wait_live(provider)
        browser = WSGIBrowser(WSGISessionMiddleware(_app_wsgi, ours))
        browser.get("/write")
        sid = browser.cookie.split("=", 1)[1]
        key = prefix + sid
        stale = provider.read(sid)
        assert stale is not None
        other = theirs.session_start({"HTTP_COOKIE": browser.cookie})
        other["other"] = True
        other.session_release()
        # Put the record as it was back in the cache, as if the invalidation were late.
        cache = provider.client_cache
        assert cache is not None
        wait_for(lambda: _stats(provider)["entries"] == 0, 5, "the invalidation")
        cache.finish(key, cache.begin(key), stale, time.time() + 3600)  # refresh not due
        assert provider.read(sid) == stale
        assert browser.get("/write") == b"2"  # lost the compare-and-set, re-read, re-applied
        assert ours.stats()["conflicts"] == 1
        session = theirs.session_start({"HTTP_COOKIE": browser.cookie})
        assert dict(session) == {"n": 2, "other": True}
    finally:
        ours.close()
        theirs.close()


def _worker(address: str, prefix: str, cookie: str, worker: int, count: int,
            start: Any, results: Any) -> None:
    manager = Manager("redis", {"ProviderConfig": {"save_path": address, "key_prefix": prefix}})
    provider = manager.provider
    assert isinstance(provider, RedisProvider)
    wait_live(provider)
    start.wait()
    for n in range(count):
        session = manager.session_start({"HTTP_COOKIE": cookie})
        session[f"w{worker}-{n}"] = n
        session.session_release()
    results.put((worker, _stats(provider), manager.stats()["conflicts"]))
    manager.close()


def test_worker_processes_sharing_a_session_keep_every_key(local_redis: str,
                                                           prefix: str) -> None:
    workers, count = 4, 60
    manager = Manager("redis", {"ProviderConfig": {"save_path": local_redis,
                                                   "key_prefix": prefix}})
    try:
        browser = WSGIBrowser(WSGISessionMiddleware(_app_wsgi, manager))
        browser.get("/write")
        context = multiprocessing.get_context("spawn")
        start, results = context.Barrier(workers), context.Queue()
        processes = [context.Process(target=_worker, args=(local_redis, prefix, browser.cookie,
                                                          i, count, start, results))
                     for i in range(workers)]
        for process in processes:
            process.start()
        reports = [results.get(timeout=120) for _ in processes]
        for process in processes:
            process.join(30)
            assert process.exitcode == 0
        session = manager.session_start({"HTTP_COOKIE": browser.cookie})
        expected = {f"w{w}-{n}": n for w in range(workers) for n in range(count)}
        assert dict(session) == {"n": 1, **expected}
        # Each worker cached (its reads of its own writes), and they raced.
        assert all(stats["live"] and stats["fills"] > 0 for _, stats, _ in reports)
        assert sum(conflicts for _, _, conflicts in reports) > 0
    finally:
        manager.close()


def _write(address: str, prefix: str, sid: str, version: int, payload: bytes) -> None:
    provider = RedisProvider({"save_path": address, "key_prefix": prefix,
                              "client_cache": False})
    assert provider.update(sid, Record(payload, time.time() + 3600, version + 1), version)
    provider.close()


def test_another_process_s_change_is_seen_once_invalidated(local_redis: str,
                                                           prefix: str) -> None:
    provider = _provider(local_redis, prefix)
    try:
        sid = "e5" * 16
        assert provider.create(sid, Record(b"first", time.time() + 3600, 1))
        before = _stats(provider)
        cached = provider.read(sid)
        assert cached is not None and (cached.payload, cached.version) == (b"first", 1)
        assert _stats(provider)["hits"] == before["hits"] + 1
        invalidations = _stats(provider)["invalidations"]
        context = multiprocessing.get_context("spawn")
        writer = context.Process(target=_write, args=(local_redis, prefix, sid, 1, b"second"))
        writer.start()
        writer.join(60)
        assert writer.exitcode == 0
        wait_for(lambda: _stats(provider)["invalidations"] > invalidations, 5,
                 "the other process's invalidation")
        record = provider.read(sid)
        assert record is not None and (record.payload, record.version) == (b"second", 2)
    finally:
        provider.close()


def test_async_reads_and_writes_use_the_cache(local_redis: str, prefix: str) -> None:
    provider = _provider(local_redis, prefix)
    sid = "f6" * 16

    async def run() -> None:
        assert await provider.acreate(sid, Record(b"a", time.time() + 3600, 1))
        hits = _stats(provider)["hits"]
        for version in range(1, 6):
            record = await provider.aread(sid)
            assert record is not None and record.version == version
            assert await provider.aupdate(sid, Record(b"b", time.time() + 3600, version + 1),
                                          version)
        assert _stats(provider)["hits"] == hits + 5
        await provider.adelete(sid)
        assert await provider.aread(sid) is None
        await provider.aclose()

    try:
        asyncio.run(run())
    finally:
        provider.close()


# -- losing the tracking connection -------------------------------------------------------


def test_a_lost_tracking_connection_flushes_the_cache(private_redis: RedisServer) -> None:
    provider = _provider(f"{HOST}:{private_redis.port}", "lost:")
    sid = "a7" * 16
    try:
        assert provider.create(sid, Record(b"v1", time.time() + 3600, 1))
        assert provider.read(sid) is not None
        assert _stats(provider)["entries"] == 1
        resets = _stats(provider)["resets"]
        with private_redis.client() as client:
            assert client.client_kill_filter(_type="pubsub") == 1  # the tracking connection
            wait_for(lambda: not _stats(provider)["live"], 5, "the cache to notice")
            assert _stats(provider)["entries"] == 0 and _stats(provider)["resets"] > resets
            # Changed while nothing tracks it: the provider reads the server, not its past.
            value = client.get("lost:" + sid)
            assert value is not None
            client.set("lost:" + sid, value.replace(b"v1", b"v2"), keepttl=True)
        record = provider.read(sid)
        assert record is not None and record.payload == b"v2"
        wait_for(lambda: _stats(provider)["live"], 5, "tracking to come back")
        assert provider.update(sid, record._replace(version=2, payload=b"v3"), 1)
        hits = _stats(provider)["hits"]
        record = provider.read(sid)
        assert record is not None and record.payload == b"v3"
        assert _stats(provider)["hits"] == hits + 1, _stats(provider)
    finally:
        provider.close()


def test_a_failover_flushes_the_cache(redis_sentinel: SentinelServers, prefix: str) -> None:
    config = {"save_path": redis_sentinel.addresses, "master_name": "mymaster",
              "key_prefix": prefix}
    provider = RedisSentinelProvider(config)
    wait_live(provider)
    sid = "b8" * 16
    try:
        assert provider.create(sid, Record(b"before", time.time() + 3600, 1))
        assert provider.read(sid) is not None and _stats(provider)["hits"] == 1
        redis_sentinel.replicate()
        resets = _stats(provider)["resets"]
        redis_sentinel.failover()
        wait_for(lambda: _stats(provider)["resets"] > resets, 20, "the cache to be flushed")
        # Written on the new master by another client: seen, never the cached past.
        wait_for(lambda: _stats(provider)["live"], 20, "tracking on the new master")
        with redis.Redis(HOST, redis_sentinel.master_port()) as client:
            value = client.get(prefix + sid)
            assert value is not None
            client.set(prefix + sid, value.replace(b"before", b"after"), keepttl=True)
        wait_for(lambda: (provider.read(sid) or Record(b"", 0, 0)).payload == b"after", 10,
                 "the new master's record")
    finally:
        provider.close()


# -- bounds -------------------------------------------------------------------------------


def test_the_cache_is_bounded_least_recently_used_first(local_redis: str,
                                                        prefix: str) -> None:
    provider = _provider(local_redis, prefix, client_cache_entries=3)
    try:
        sids = [f"{i:02d}" * 16 for i in range(5)]
        for sid in sids:
            assert provider.create(sid, Record(b"x", time.time() + 3600, 1))
        stats = _stats(provider)
        assert stats["entries"] == 3 and stats["evictions"] >= 2
        provider.read(sids[2])  # the oldest of the three kept: now the most recent
        assert provider.create("99" * 16, Record(b"x", time.time() + 3600, 1))
        hits = _stats(provider)["hits"]
        provider.read(sids[3])  # evicted in its turn
        provider.read(sids[2])
        assert _stats(provider)["hits"] == hits + 1
    finally:
        provider.close()
    provider = _provider(local_redis, prefix, client_cache_bytes=1000)
    try:
        for i in range(4):
            assert provider.create(f"b{i}" * 16, Record(b"y" * 400, time.time() + 3600, 1))
        stats = _stats(provider)
        assert stats["entries"] == 1 and 600 < stats["bytes"] <= 1000
    finally:
        provider.close()


def test_the_manager_reports_the_cache(local_redis: str, prefix: str) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from websession.metrics import register_prometheus

    manager = Manager("redis", {"ProviderConfig": {"save_path": local_redis,
                                                   "key_prefix": prefix}})
    try:
        wait_live(manager.provider)
        browser = WSGIBrowser(WSGISessionMiddleware(_app_wsgi, manager))
        browser.get("/write")
        browser.get("/read")
        stats = manager.stats()
        assert stats["cache_hits"] == 1 and stats["cache_entries"] == 1
        registry = CollectorRegistry()
        register_prometheus(manager, registry)
        exported = generate_latest(registry).decode()
        assert 'websession_cache_hits_total{manager="default"} 1.0' in exported
        assert 'websession_cache_entries{manager="default"} 1.0' in exported
    finally:
        manager.close()
    uncached = Manager("redis", {"ProviderConfig": {"save_path": local_redis,
                                                    "client_cache": False}})
    assert "cache_hits" not in uncached.stats()
    uncached.close()


def test_a_forked_child_starts_a_cache_of_its_own(local_redis: str, prefix: str) -> None:
    """gunicorn --preload: a provider used before the fork must not serve the parent's
    entries in a child, where no thread keeps them true."""
    import os

    provider = _provider(local_redis, prefix)
    sid = "c9" * 16
    try:
        assert provider.create(sid, Record(b"parent", time.time() + 3600, 1))
        assert provider.read(sid) is not None and _stats(provider)["entries"] == 1
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            code = 1
            try:
                fresh = _stats(provider)
                record = provider.read(sid)  # the server's, not the parent's entry
                code = 0 if (fresh["entries"] == 0 and fresh["hits"] == 0 and record
                             and record.payload == b"parent") else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _stats(provider)["live"]  # the parent's tracking is untouched
        assert provider.read(sid) is not None
    finally:
        provider.close()
