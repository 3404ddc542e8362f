"""Redis providers: one server (``redis``), Redis Cluster (``redis_cluster``) and Redis
Sentinel (``redis_sentinel``), over redis-py (``pip install 'websession[redis]'``).

A session is one Redis string under ``key_prefix + sid``, holding
``span:version:deadline:payload`` and carrying a Redis TTL: Redis itself expires
sessions, so :meth:`~RedisProvider.gc` has nothing to do. ``span`` is the idle window
(milliseconds) the engine asked for at the last write; a read moves the TTL back to a full
span once a tenth of it has passed, itself, which is what lets a read-only request cost one
round trip (see :attr:`~websession.providers.BaseProvider.refreshes_on_read`).

Each primitive a request uses is one round trip, atomic on the server: ``SET NX PX``
(create), ``GET`` (read), a Lua compare-and-set (update) and move-the-deadline (touch)
scripts, ``DEL`` (delete). A read whose stored deadline says the refresh is due sends the
Lua read-and-refresh script after its ``GET`` (a second round trip, once per tenth of the
idle span): a script costs the server several times a ``GET``, so the common read does
without. Scripts go by ``EVALSHA``; the first use of each on a
server (after a start or ``SCRIPT FLUSH``) costs one more round trip, the ``EVAL`` that
caches it. A session is a single key, so any hash slot will do: nothing needs two keys in
one slot, and regenerating an ID is create-then-delete, never ``RENAME``.

Each primitive is a plan (:mod:`websession._plans`) of Redis commands, written once: the
sync primitives run it over redis-py's blocking clients, their ``a``-prefixed twins over
``redis.asyncio`` (no threads). The clients live in :mod:`._redis_clients`, the
configuration forms in :mod:`._redis_config`.

The value format and each primitive's commands live in :mod:`._redis_commands`.
``redis`` and ``redis_sentinel`` cache records client-side by default
(:mod:`._redis_cache`, ``client_cache``): a record this process read or wrote and nobody
changed since is read without a round trip, so a changing request costs one (the
compare-and-set). With the cache, the plans are :class:`~._redis_cache.CachedPlans`'s:
the same commands, each a *flight* the cache checks before trusting its result.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, ClassVar

from ..exceptions import MissingDependencyError
from .base import Record

try:
    import redis  # noqa: F401 - here, so that a missing driver fails naming the extra
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("redis", "redis", "redis") from exc

from .._plans import Plan, adrive, drive
from ._redis_cache import CachedPlans, RecordCache
from ._redis_clients import (
    ASYNC,
    CLUSTER_UNAVAILABLE_ERRORS,
    NO_OPTIONS,
    UNAVAILABLE_ERRORS,
    ClusterClients,
    RedisClients,
    SentinelClients,
    ServerClients,
)
from ._redis_commands import (
    COMMANDS,
    PLAIN,
    match_pattern,
    scan_command,
    scan_plan,
)
from ._redis_config import (
    ClusterConfigParser,
    RedisConfigParser,
    RedisOptions,
    SentinelConfigParser,
    parse_redis_config,
)
from ._redis_ops import RedisOps

__all__ = [
    "RedisClusterProvider",
    "RedisOptions",
    "RedisProvider",
    "RedisSentinelProvider",
    "parse_redis_config",
]

# -- the providers ------------------------------------------------------------------------


class _RedisBase(RedisOps):
    """What the three Redis providers share: the primitives, run over their clients; and
    the optional abilities (listing, the user index, batch creation, expired events) of
    :class:`~._redis_ops.RedisOps`.

    Subclasses name their configuration forms (:attr:`config_parser`) and their
    topology's clients (:attr:`clients_class`); everything else is here, once.
    """

    blocking = True
    refreshes_on_read = True
    unavailable_errors = UNAVAILABLE_ERRORS
    provider_name: ClassVar[str]
    #: Reads this provider's ``providerConfig`` forms.
    config_parser: ClassVar[RedisConfigParser]
    #: Builds, holds and sends through this provider's clients.
    clients_class: ClassVar[type[RedisClients]]

    def __init__(self, config: Any = None, *, key_prefix: str | None = None) -> None:
        """``config`` is any ``providerConfig`` form (see :func:`parse_redis_config`) or a
        redis-py client; ``key_prefix`` overrides the configured one."""
        self._prefix_override = key_prefix
        # A cluster or sentinel provider made by name gets its addresses from configure().
        self._configured = config is not None
        if config is None and self.config_parser.addresses_required:
            self._set_options(RedisOptions())
        else:
            self._set_options(self.config_parser.parse(config))

    def _set_options(self, options: RedisOptions) -> None:
        if self._prefix_override is not None:
            options = replace(options, key_prefix=self._prefix_override)
        self.options = options
        self.key_prefix = options.key_prefix
        self._pattern = match_pattern(options.key_prefix)
        self._clients = self.clients_class(options, type(self).__name__)
        cached = CachedPlans(options.client_cache, COMMANDS, options.key_prefix,
                             self._clients.tracking_connection, self._clients.tracking_target)
        self._caching = cached if self._caches(options) else None
        plans = PLAIN if self._caching is None else cached
        self._reading, self._creating, self._updating = plans.read, plans.create, plans.update
        self._touching, self._deleting = plans.touch, plans.delete

    def _caches(self, options: RedisOptions) -> bool:
        """Whether this configuration caches records client-side (see :meth:`cache_stats`)."""
        # Tracking needs a blocking connection; an application's asyncio client has none.
        return (options.client_cache.enabled
                and not isinstance(options.client, ASYNC.redis.Redis | ASYNC.sentinel.Sentinel))

    def _uncache(self, keys: list[str]) -> None:
        cache = None if self._caching is None else self._caching.cache()
        if cache is not None:
            for key in keys:
                cache.discard(key)

    @property
    def client_cache(self) -> RecordCache | None:
        """The client-side cache (its tracking started), or ``None`` when caching is off."""
        return None if self._caching is None else self._caching.cache()

    def stats(self) -> dict[str, int | float]:
        """The client-side cache's counters for ``Manager.stats()``, each named
        ``cache_…`` (none when caching is off)."""
        stats = self.cache_stats()
        return {} if stats is None else {f"cache_{name}": value
                                         for name, value in stats.items()}

    def cache_stats(self) -> dict[str, int | float | bool] | None:
        """The client-side cache's counters (hits, misses, hit rate, fills, evictions,
        invalidations, resets, entries, bytes, and whether it is live); ``None`` when
        caching is off."""
        cache = self.client_cache
        return None if cache is None else cache.stats()

    def configure(self, config: Any) -> None:
        """Apply the manager's ``providerConfig`` (any form :func:`parse_redis_config`
        takes). An empty one keeps what the constructor was given."""
        empty = config is None or (isinstance(config, str) and not config.strip())
        if empty and (self._configured or not self.config_parser.addresses_required):
            return
        options = self.config_parser.parse(config)
        # Async clients made with the old settings go with them. (Each should have been
        # closed in its loop: configure before use, as the manager does.)
        self.close()
        self._configured = True
        self._set_options(options)

    # -- the primitives: each plan, run by either mode ------------------------------------

    def read(self, sid: str) -> Record | None:
        """The live record; a Lua script also restores a tenth-spent idle span
        (``refreshed``)."""
        return drive(self._reading(self.key_prefix + sid), self._clients.send)

    def aread(self, sid: str) -> Coroutine[Any, Any, Record | None]:
        """Async twin of :meth:`read`."""
        return adrive(self._reading(self.key_prefix + sid), self._clients.asend)

    def create(self, sid: str, record: Record) -> bool:
        """``SET NX PX``: store only if no live record has this ID."""
        return drive(self._creating(self.key_prefix + sid, record), self._clients.send)

    def acreate(self, sid: str, record: Record) -> Coroutine[Any, Any, bool]:
        """Async twin of :meth:`create`."""
        return adrive(self._creating(self.key_prefix + sid, record), self._clients.asend)

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """Compare-and-set in a Lua script: only over a live record at that version."""
        plan = self._updating(self.key_prefix + sid, record, expected_version)
        return drive(plan, self._clients.send)

    def aupdate(self, sid: str, record: Record,
                expected_version: int) -> Coroutine[Any, Any, bool]:
        """Async twin of :meth:`update`."""
        plan = self._updating(self.key_prefix + sid, record, expected_version)
        return adrive(plan, self._clients.asend)

    def touch(self, sid: str, expires_at: float) -> bool:
        """Move the live record's deadline: its TTL and stored deadline, in a Lua script."""
        return drive(self._touching(self.key_prefix + sid, expires_at), self._clients.send)

    def atouch(self, sid: str, expires_at: float) -> Coroutine[Any, Any, bool]:
        """Async twin of :meth:`touch`."""
        return adrive(self._touching(self.key_prefix + sid, expires_at), self._clients.asend)

    def delete(self, sid: str) -> None:
        """``DEL``."""
        drive(self._deleting(self.key_prefix + sid), self._clients.send)

    def adelete(self, sid: str) -> Coroutine[Any, Any, None]:
        """Async twin of :meth:`delete`."""
        return adrive(self._deleting(self.key_prefix + sid), self._clients.asend)

    def _count(self, client: Callable[[], Any]) -> Plan[int]:
        """Count sessions; ``client()`` is the running mode's client (a cluster asks it
        for its masters)."""
        return scan_plan(self._pattern)

    def count(self) -> int:
        """Count live sessions with ``SCAN MATCH prefix*``: O(keys in the database)."""
        return drive(self._count(self._clients.sync), self._clients.send)

    def acount(self) -> Coroutine[Any, Any, int]:
        """Async twin of :meth:`count`."""
        return adrive(self._count(self._clients.async_client), self._clients.asend)

    def gc(self) -> int:
        """Nothing to do: Redis expires sessions by their TTL."""
        return 0

    async def agc(self) -> int:
        """Async twin of :meth:`gc`."""
        return 0

    def close(self) -> None:
        """Close the connections this provider opened; an application's own client is
        left open. Async clients are closed by :meth:`aclose`, in their event loop."""
        if self._caching is not None:
            self._caching.stop()
        self._clients.close()

    async def aclose(self) -> None:
        """Close this event loop's async client, and the sync one."""
        await self._clients.aclose()
        self.close()


class RedisProvider(_RedisBase):
    """Sessions on one Redis server (``Manager("redis", ...)``); Redis 2.6 or later.

    ``providerConfig`` is beego's ``"addr,poolsize,password[,dbnum[,idle_timeout[,...]]]"``
    (``"127.0.0.1:6379,100,astaxie,0"``), beego's JSON (``save_path``, ``poolsize``,
    ``password``, ``db_num``, ``idle_timeout``, ``idle_check_frequency``,
    ``max_retries``) plus ``username``, ``key_prefix`` (default ``"websession:"``),
    ``socket_timeout``, ``connect_timeout``, ``pool_timeout`` and ``client_cache``
    (``true``/``false``), ``client_cache_entries``, ``client_cache_bytes``, a
    ``redis://``/``rediss://``/``unix://`` URL, or a ``redis.Redis`` or
    ``redis.asyncio.Redis`` client the application owns (as the constructor argument or
    ``{"client": client}``). Connections are opened on first use, from a pool bounded by
    ``poolsize`` (default 100) where callers wait up to ``pool_timeout`` seconds for a free
    connection rather than open more.

    Round trips per request: none if the session is not used, one to read it (two once a
    tenth of the idle span has passed: the second restores the idle deadline), one more
    to write it; with the client-side cache
    (the default), none to read a record this process read or wrote and nobody changed
    since, unless its idle refresh is due. :meth:`count`
    (``session_all``) walks the keyspace with ``SCAN``: O(keys in the database, not just
    sessions), 1000 keys per round trip — milliseconds for thousands of keys, seconds for
    tens of millions; keep sessions in their own database to make it cheap. :meth:`gc`
    does nothing: Redis expires keys by their TTL.

    A session read in the last moments of its absolute lifetime keeps its key until its
    idle span passes (the engine already treats it as gone): :meth:`count` may include it
    meanwhile.
    """

    provider_name = "redis"
    config_parser = RedisConfigParser()
    clients_class = ServerClients


class RedisClusterProvider(_RedisBase):
    """Sessions on a Redis Cluster (``Manager("redis_cluster", ...)``).

    ``providerConfig`` takes the forms :class:`RedisProvider` takes, with beego's
    ``;``-separated seed nodes (``"10.0.0.1:7000;10.0.0.2:7000,100,secret"``) or a ``;``
    list of ``redis://``/``rediss://`` URLs, or a ``RedisCluster`` client (sync or
    asyncio); the rest of the cluster is discovered. A session is one key, so sessions
    spread over every master by hash slot (unless ``key_prefix`` holds a ``{hash tag}``),
    and regenerating an ID never needs two keys in one slot.

    ``poolsize`` bounds both the connections to each node and the commands in flight;
    callers beyond it wait instead of failing. :meth:`count` must ``SCAN`` every master:
    O(keys in the cluster), 1000 keys per round trip.
    """

    provider_name = "redis_cluster"
    config_parser = ClusterConfigParser()
    clients_class = ClusterClients
    unavailable_errors = CLUSTER_UNAVAILABLE_ERRORS

    def _count(self, client: Callable[[], Any]) -> Plan[int]:
        # Without a target node, SCAN goes to every master at once, and a cold client
        # learns the topology first; each master with more keys is then walked alone.
        cursors, keys = yield scan_command(self._pattern, 0), NO_OPTIONS
        total = len(keys)
        for node in client().get_primaries():
            if cursors.get(node.name):
                total += yield from scan_plan(self._pattern, cursors[node.name],
                                          {"target_nodes": node})
        return total


class RedisSentinelProvider(_RedisBase):
    """Sessions on a Redis master found through Sentinel (``Manager("redis_sentinel", ...)``).

    ``providerConfig`` is beego's ``"sentinel1:26379;sentinel2:26379,poolsize,password,
    dbnum,mastername"`` (the master name defaults to ``mymaster``), its JSON with
    ``master_name`` (and ``sentinel_password`` for sentinels that require one), a
    ``redis+sentinel://[user:password@]host:port[,host:port...]/mastername[/db]`` URL
    (``rediss+sentinel://`` for TLS), or a ``Sentinel`` the application owns (sync or
    asyncio; its master is looked up by name). After a failover the clients ask the
    sentinels for the new master; requests during the switch raise
    :class:`~websession.StoreUnavailableError`.

    Redis replicates asynchronously: a session written in the last moments before a
    failover may be lost with the old master, as any Redis data would be. Counting costs
    as for :class:`RedisProvider`.
    """

    provider_name = "redis_sentinel"
    config_parser = SentinelConfigParser()
    clients_class = SentinelClients
