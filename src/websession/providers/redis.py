"""Redis providers: one server (``redis``), Redis Cluster (``redis_cluster``) and Redis
Sentinel (``redis_sentinel``), over redis-py (``pip install 'websession[redis]'``).

A session is one Redis string under ``key_prefix + sid``, holding
``span:version:deadline:payload`` and carrying a Redis TTL: Redis itself expires
sessions, so :meth:`~RedisProvider.gc` has nothing to do. ``span`` is the idle window
(milliseconds) the engine asked for at the last write; a read moves the TTL back to a full
span in the same round trip, which is what lets a read-only request cost one round trip
(see :attr:`~websession.providers.BaseProvider.refreshes_on_read`).

Each primitive a request uses is one round trip, atomic on the server: ``SET NX PX``
(create), a Lua compare-and-set (update), Lua read-and-refresh (read) and move-the-deadline
(touch) scripts, ``DEL`` (delete). Scripts go by ``EVALSHA``; the first use of each on a
server (after a start or ``SCRIPT FLUSH``) costs one more round trip, the ``EVAL`` that
caches it. A session is a single key, so any hash slot will do: nothing needs two keys in
one slot, and regenerating an ID is create-then-delete, never ``RENAME``.

Sync primitives use ``redis.Redis``/``RedisCluster``; their ``a``-prefixed twins use
``redis.asyncio`` natively (no threads), with one client per running event loop, created
on first use in that loop. Key naming, scripts, arguments and reply parsing are shared;
each mode only sends the command.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import re
import threading
import time
import weakref
from abc import abstractmethod
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple
from urllib.parse import unquote

from ..exceptions import ConfigurationError, MissingDependencyError, SessionModeError
from .base import BaseProvider, Record, parse_options

try:
    import redis
    import redis.asyncio as aredis
    import redis.asyncio.cluster as acluster
    import redis.asyncio.connection as aconnection
    import redis.asyncio.retry as aretry
    import redis.asyncio.sentinel as asentinel
    import redis.cluster as scluster
    import redis.connection as sconnection
    import redis.retry as sretry
    import redis.sentinel as ssentinel
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import NoScriptError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("redis", "redis", "redis") from exc

__all__ = [
    "RedisClusterProvider",
    "RedisOptions",
    "RedisProvider",
    "RedisSentinelProvider",
    "parse_redis_config",
]

#: beego's default pool size (``MaxPoolSize``).
DEFAULT_POOL_SIZE = 100
DEFAULT_PREFIX = "websession:"
DEFAULT_MASTER_NAME = "mymaster"
# Keys asked of each SCAN step: large enough that counting costs few round trips.
SCAN_COUNT = 1000

# -- the scripts --------------------------------------------------------------------------
#
# A value is "<span>:<version>:<deadline>:<payload>". The span is the TTL (ms) the last
# write asked for — the session's idle window — in a fixed width, so that scripts read it
# without a pattern match (this is the hot path: Lua string work costs more than the
# commands). The deadline is the record's expiry exactly as the engine gave it (a float's
# repr), so a record reads back as it was written; Redis enforces the TTL.

_SPAN_WIDTH = 12  # milliseconds: up to 31 years
_HEADER = _SPAN_WIDTH + 1  # the span and its colon; the version starts after it
_MAX_SPAN = 999_999_999_999  # the widest span that fits

# Read and refresh in one round trip. The TTL goes back to a full span only once a tenth
# of it has passed (the engine's own refresh rule), so a busy session is not rewritten —
# nor replicated, nor appended to the AOF — on every read; a TTL longer than the span (a
# touch moved it) is never shortened. The deadline moves by what the TTL gained.
_READ_LUA = f"""
local value = redis.call('GET', KEYS[1])
if not value then return false end
local span = tonumber(string.sub(value, 1, {_SPAN_WIDTH}))
if not span then return value end
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 and ttl < span - math.floor(span / 10) then
  local v_end = string.find(value, ':', {_HEADER + 1}, true)
  local d_end = v_end and string.find(value, ':', v_end + 1, true)
  if d_end then
    local deadline = tonumber(string.sub(value, v_end + 1, d_end - 1)) + (span - ttl) / 1000
    value = string.sub(value, 1, v_end) .. string.format('%.17g', deadline)
      .. string.sub(value, d_end)
    redis.call('SET', KEYS[1], value, 'PX', span)
  end
end
return value
"""

# Compare-and-set: write only over a live record whose version field is ARGV[1]
# ("<version>:"). GETRANGE reads just that field, however large the session.
_UPDATE_LUA = f"""
if redis.call('GETRANGE', KEYS[1], {_HEADER}, {_HEADER - 1} + #ARGV[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# Move a live record's deadline: ARGV is the new deadline and its TTL in ms.
_TOUCH_LUA = f"""
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
local v_end = string.find(value, ':', {_HEADER + 1}, true)
local d_end = v_end and string.find(value, ':', v_end + 1, true)
if not d_end then return 0 end
redis.call('SET', KEYS[1], string.sub(value, 1, v_end) .. ARGV[1] .. string.sub(value, d_end),
           'PX', ARGV[2])
return 1
"""


class _Script(NamedTuple):
    source: str
    sha: str


def _script(source: str) -> _Script:
    return _Script(source, hashlib.sha1(source.encode()).hexdigest())


_READ = _script(_READ_LUA)
_UPDATE = _script(_UPDATE_LUA)
_TOUCH = _script(_TOUCH_LUA)

# -- records <-> Redis values (shared by both modes) --------------------------------------


def _ttl_ms(expires_at: float) -> int:
    # A deadline already past still gets a (1 ms) TTL: the stored deadline says it is
    # gone, and one command stays one command.
    return min(max(1, int((expires_at - time.time()) * 1000)), _MAX_SPAN)


def _value(record: Record, ttl: int) -> bytes:
    header = f"{ttl:0{_SPAN_WIDTH}d}:{record.version}:{record.expires_at!r}:"
    return header.encode() + record.payload


def _record(value: bytes | None) -> Record | None:
    """A stored value as a live record; ``None`` if absent, expired or foreign."""
    if value is None or value[_SPAN_WIDTH:_HEADER] != b":":
        return None
    version, _, rest = value[_HEADER:].partition(b":")
    deadline, sep, payload = rest.partition(b":")
    if not sep or not version.isdigit():
        return None
    try:
        expires_at = float(deadline)
    except ValueError:
        return None
    if expires_at <= time.time():
        return None  # past its deadline, in the last millisecond of its TTL
    return Record(payload, expires_at, int(version))


def _create_args(record: Record) -> tuple[Any, ...]:
    ttl = _ttl_ms(record.expires_at)
    return (_value(record, ttl), "NX", "PX", ttl)


def _update_args(record: Record, expected_version: int) -> tuple[Any, ...]:
    ttl = _ttl_ms(record.expires_at)
    return (b"%d:" % expected_version, _value(record, ttl), ttl)


def _touch_args(expires_at: float) -> tuple[Any, ...]:
    return (repr(expires_at), _ttl_ms(expires_at))


def _match_pattern(prefix: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"


#: A multi-step operation (counting): yields (command, options) and receives each reply.
_Plan = Generator[tuple[tuple[Any, ...], dict[str, Any]], Any, int]


def _count_plan(pattern: str, targets: list[dict[str, Any]]) -> _Plan:
    total = 0
    for options in targets:
        cursor = 0
        while True:
            cursor, keys = yield ("SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT), options
            if isinstance(cursor, dict):  # a cluster's cursor is {node name: cursor}
                (cursor,) = cursor.values()
            total += len(keys)
            if not int(cursor):
                break
    return total


# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """A parsed ``providerConfig``; every provider form ends up as one of these.

    ``addresses`` holds ``(host, port)`` pairs (one for a single server, the seed nodes of
    a cluster, or the sentinels). ``connection`` holds further redis-py connection
    arguments, from a URL's query string.
    """

    addresses: tuple[tuple[str, int], ...] = (("127.0.0.1", 6379),)
    pool_size: int = DEFAULT_POOL_SIZE
    username: str | None = None
    password: str | None = None
    db: int = 0
    ssl: bool = False
    unix_socket: str | None = None
    master_name: str = DEFAULT_MASTER_NAME
    sentinel_password: str | None = None
    key_prefix: str = DEFAULT_PREFIX
    max_retries: int = 3
    socket_timeout: float = 5.0
    connect_timeout: float = 5.0
    pool_timeout: float = 5.0
    health_check_interval: float = 0.0
    connection: Mapping[str, Any] = field(default_factory=dict)
    client: Any = None


_DEFAULT_PORT = {"redis": 6379, "redis_cluster": 6379, "redis_sentinel": 26379}

# JSON keys: beego's (save_path, poolsize, password, db_num, idle_timeout,
# idle_check_frequency, max_retries, master_name) and websession's. parse_options
# matches them case-insensitively and ignores underscores, so "dbNum" and "DbNum" work.
_KNOWN: dict[str, type] = {
    "save_path": object,
    "conn": object,
    "addr": object,
    "url": object,
    "poolsize": int,
    "username": str,
    "password": str,
    "db_num": int,
    "db": int,
    "idle_timeout": object,
    "idle_check_frequency": object,
    "max_retries": int,
    "master_name": str,
    "sentinel_password": str,
    "key_prefix": str,
    "prefix": str,
    "socket_timeout": object,
    "connect_timeout": object,
    "pool_timeout": object,
    "client": object,
}
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_URL_SCHEMES = ("redis://", "rediss://", "unix://")
_SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")


def _fail(provider: str, message: str, key: str | None = None) -> ConfigurationError:
    return ConfigurationError(f"providerConfig for {provider!r}: {message}", key=key)


def _seconds(provider: str, key: str, value: Any) -> float:
    """Seconds from a number or a Go duration string ("30s", "1m30s", "250ms")."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "0"):
            return 0.0
        if text.isdigit():
            return float(text)
        if _GO_DURATION.sub("", text) == "":
            return sum(float(n) * _GO_UNITS[u] for n, u in _GO_DURATION.findall(text))
    raise _fail(provider, f"{key} must be seconds or a Go duration such as '30s', got {value!r}",
                key)


def _whole(provider: str, key: str, text: str) -> int:
    try:
        number = int(text.strip())
    except ValueError:
        raise _fail(provider, f"{key} must be a whole number, got {text!r}", key) from None
    if number < 0:
        raise _fail(provider, f"{key} must not be negative, got {number}", key)
    return number


def _address(provider: str, text: str) -> tuple[str, int]:
    text = text.strip()
    default = _DEFAULT_PORT[provider]
    if text.startswith("["):  # [::1]:6379
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise _fail(provider, f"address {text!r} has no host", "save_path")
    if not port:
        return host, default
    number = _whole(provider, "port", port)
    if not 0 < number < 65536:
        raise _fail(provider, f"address {text!r}: port out of range", "save_path")
    return host, number


_parse_url: Any = sconnection.parse_url  # untyped in redis-py


def _from_url(provider: str, url: str) -> dict[str, Any]:
    """Fields of a redis://, rediss:// or unix:// URL, as :class:`RedisOptions` fields."""
    try:
        parsed = dict(_parse_url(url))
    except ValueError as exc:
        raise _fail(provider, f"invalid URL: {exc}", "save_path") from None
    connection_class = parsed.pop("connection_class", None)
    fields: dict[str, Any] = {
        "ssl": connection_class is not None and issubclass(connection_class,
                                                          sconnection.SSLConnection),
    }
    path = parsed.pop("path", None)
    if path:
        fields["unix_socket"] = path
    else:
        fields["addresses"] = ((str(parsed.pop("host", "localhost")),
                                int(parsed.pop("port", _DEFAULT_PORT[provider]))),)
    for name in ("username", "password"):
        if parsed.get(name) is not None:
            fields[name] = parsed.pop(name)
        parsed.pop(name, None)
    if "db" in parsed:
        fields["db"] = int(parsed.pop("db"))
    for name in ("max_connections", "poolsize"):
        if name in parsed:
            fields["pool_size"] = _whole(provider, name, str(parsed.pop(name)))
    for name in ("key_prefix", "prefix"):
        if name in parsed:
            fields["key_prefix"] = unquote(str(parsed.pop(name)))
    unknown = sorted(set(parsed) - _connection_options())
    if unknown:
        raise _fail(provider, f"unknown URL option {unknown[0]!r}", unknown[0])
    fields["connection"] = parsed  # the rest of the query string, for redis-py
    return fields


def _connection_options() -> set[str]:
    """What a URL's query string may pass on to redis-py's connections."""
    names: set[str] = set()
    for cls in (sconnection.AbstractConnection, sconnection.Connection,
                sconnection.SSLConnection):
        names.update(inspect.signature(cls.__init__).parameters)
    return names - {"self", "args", "kwargs", "host", "port", "path"}


def _from_sentinel_url(url: str) -> dict[str, Any]:
    """``redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]``."""
    provider = "redis_sentinel"
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    fields: dict[str, Any] = {"ssl": scheme.startswith("rediss")}
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            fields["password"] = unquote(password) or None
        if user:
            fields["username"] = unquote(user)
    fields["addresses"] = tuple(_address(provider, h) for h in hosts.split(",") if h.strip())
    parts = [p for p in path.split("/") if p]
    if parts:
        fields["master_name"] = unquote(parts[0])
    if len(parts) > 1:
        fields["db"] = _whole(provider, "db", parts[1])
    for item in filter(None, query.split("&")):
        name, _, value = item.partition("=")
        if name == "sentinel_password":
            fields["sentinel_password"] = unquote(value) or None
        else:
            raise _fail(provider, f"unknown URL option {name!r} (known: sentinel_password)",
                        name)
    return fields


def _addresses(provider: str, text: str) -> dict[str, Any]:
    """Fields from beego's address list: ``host:port`` entries separated by ``;``, or
    URLs (a list of URLs only for a cluster's seed nodes)."""
    text = text.strip()
    if provider == "redis_sentinel" and text.startswith(_SENTINEL_SCHEMES):
        return _from_sentinel_url(text)
    items = [item for item in text.split(";") if item.strip()]
    if not items:
        raise _fail(provider, "no address given", "save_path")
    if any(item.strip().startswith(_URL_SCHEMES) for item in items):
        if provider == "redis_sentinel":
            raise _fail(provider, "a sentinel URL is redis+sentinel://host:port,.../master",
                        "save_path")
        if len(items) > 1 and provider == "redis":
            raise _fail(provider, "one URL only (use redis_cluster for several nodes)",
                        "save_path")
        merged: dict[str, Any] = {}
        nodes: list[tuple[str, int]] = []
        for item in items:
            if not item.strip().startswith(_URL_SCHEMES):
                raise _fail(provider, f"mixed URLs and addresses: {item!r}", "save_path")
            fields = _from_url(provider, item.strip())
            nodes.extend(fields.pop("addresses", ()))
            merged = {**fields, **merged}  # the first URL's credentials win
        if nodes:
            merged["addresses"] = tuple(nodes)
        return merged
    if provider == "redis" and len(items) > 1:
        raise _fail(provider, "one address only (use redis_cluster or redis_sentinel for "
                    "several)", "save_path")
    return {"addresses": tuple(_address(provider, item) for item in items)}


def _from_seed_string(provider: str, text: str) -> dict[str, Any]:
    """beego's v1 string: ``addr,poolsize,password,dbnum,idle_timeout,idle_check,retries``;
    the sentinel's has the master name after ``dbnum``. Empty fields keep defaults."""
    parts = [part.strip() for part in text.split(",")]
    names = ["save_path", "poolsize", "password", "db_num"]
    if provider == "redis_sentinel":
        names.append("master_name")
    names += ["idle_timeout", "idle_check_frequency", "max_retries"]
    if len(parts) > len(names):
        raise _fail(provider, f"too many comma-separated fields ({len(parts)}; at most "
                    f"{len(names)}: {','.join(names)})")
    given = dict(zip(names, parts, strict=False))
    fields = _addresses(provider, given.pop("save_path"))
    for name, value in given.items():
        if value == "":
            continue
        if name == "poolsize":
            fields["pool_size"] = _whole(provider, name, value)
        elif name == "password":
            fields["password"] = value
        elif name == "db_num":
            fields["db"] = _whole(provider, name, value)
        elif name == "master_name":
            fields["master_name"] = value
        elif name == "idle_timeout":
            fields["health_check_interval"] = _seconds(provider, name, value)
        elif name == "max_retries":
            fields["max_retries"] = _whole(provider, name, value)
        # idle_check_frequency: go-redis's idle-connection reaper; redis-py has none.
    return fields


def _from_mapping(provider: str, config: Mapping[str, Any]) -> dict[str, Any]:
    options = parse_options(config, _KNOWN, provider=provider)
    fields: dict[str, Any] = {}
    addresses = [options[k] for k in ("save_path", "conn", "addr", "url") if k in options]
    if len(addresses) > 1:
        raise _fail(provider, "give the address once (save_path, conn, addr or url)",
                    "save_path")
    if addresses:
        value = addresses[0]
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            value = ";".join(value)
        if not isinstance(value, str):
            raise _fail(provider, f"save_path must be a string, got {value!r}", "save_path")
        fields.update(_addresses(provider, value))
    if "client" in options:
        fields["client"] = options["client"]
    for key, name in (("poolsize", "pool_size"), ("username", "username"),
                      ("password", "password"), ("db_num", "db"), ("db", "db"),
                      ("max_retries", "max_retries"), ("master_name", "master_name"),
                      ("sentinel_password", "sentinel_password"),
                      ("key_prefix", "key_prefix"), ("prefix", "key_prefix")):
        if key in options:
            fields[name] = options[key]
    for key, name in (("idle_timeout", "health_check_interval"),
                      ("socket_timeout", "socket_timeout"),
                      ("connect_timeout", "connect_timeout"),
                      ("pool_timeout", "pool_timeout")):
        if key in options:
            fields[name] = _seconds(provider, key, options[key])
    if "idle_check_frequency" in options:
        _seconds(provider, "idle_check_frequency", options["idle_check_frequency"])
    return fields


def parse_redis_config(config: Any, provider: str = "redis") -> RedisOptions:
    """Parse any accepted ``providerConfig`` form for ``provider`` ("redis",
    "redis_cluster" or "redis_sentinel") into :class:`RedisOptions`.

    Accepted: beego's v1 string (``"127.0.0.1:6379,100,astaxie,0"``), beego's JSON or a
    mapping with the same keys, a ``redis://``/``rediss://``/``unix://`` URL (a ``;``
    list of them for a cluster; ``redis+sentinel://host:port,.../master`` for Sentinel),
    or a redis-py client the application owns. A malformed value is a
    :class:`~websession.ConfigurationError` naming the problem.
    """
    fields: dict[str, Any]
    if config is None or (isinstance(config, str) and not config.strip()):
        if provider != "redis":
            raise _fail(provider, "the server addresses are required, e.g. "
                        "'127.0.0.1:7000;127.0.0.1:7001'", "save_path")
        fields = {}
    elif isinstance(config, str) and config.strip().startswith("{"):
        try:
            mapping = json.loads(config)
        except json.JSONDecodeError as exc:
            raise _fail(provider, f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                        f"{exc.msg}") from None
        if not isinstance(mapping, dict):
            raise _fail(provider, "a JSON config must be an object")
        fields = _from_mapping(provider, mapping)
    elif isinstance(config, str):
        text = config.strip()
        if text.startswith(_URL_SCHEMES + _SENTINEL_SCHEMES):
            fields = _addresses(provider, text)
        else:
            fields = _from_seed_string(provider, text)
    elif isinstance(config, Mapping):
        fields = _from_mapping(provider, config)
    else:
        fields = {"client": config}
    for name in ("username", "password"):
        if fields.get(name) == "":
            fields[name] = None  # as in beego: an empty password means none
    options = RedisOptions(**fields)
    _check(provider, options)
    return options


def _check(provider: str, options: RedisOptions) -> None:
    if options.pool_size < 1:
        raise _fail(provider, "poolsize must be at least 1", "poolsize")
    if provider == "redis_cluster" and options.db:
        raise _fail(provider, "a Redis Cluster has only database 0", "db_num")
    if provider == "redis_cluster" and options.unix_socket:
        raise _fail(provider, "a Redis Cluster is not reached through a unix socket",
                    "save_path")
    if provider == "redis_sentinel" and not options.master_name:
        raise _fail(provider, "master_name is required", "master_name")
    if options.client is not None and not isinstance(options.client, _CLIENT_TYPES[provider]):
        names = ", ".join(f"{t.__module__}.{t.__qualname__}" for t in _CLIENT_TYPES[provider])
        raise _fail(provider, f"a client must be one of {names}; got "
                    f"{type(options.client).__module__}.{type(options.client).__qualname__}",
                    "client")


_CLIENT_TYPES: dict[str, tuple[type, ...]] = {
    "redis": (redis.Redis, aredis.Redis),
    "redis_cluster": (scluster.RedisCluster, acluster.RedisCluster),
    "redis_sentinel": (redis.Redis, aredis.Redis, ssentinel.Sentinel, asentinel.Sentinel),
}

# -- the providers ------------------------------------------------------------------------


class _AsyncClient(NamedTuple):
    client: Any
    #: Bounds commands in flight where the pool itself does not wait (cluster nodes).
    limit: asyncio.Semaphore | None


#: Seconds between tries for a connection while a pool is full.
_POOL_POLL = 0.002

_SYNC_TYPES = (redis.Redis, scluster.RedisCluster, ssentinel.Sentinel)
_ASYNC_TYPES = (aredis.Redis, acluster.RedisCluster, asentinel.Sentinel)


class _RedisBase(BaseProvider):
    """What the three Redis providers share: the primitives, the clients' life cycle.

    Subclasses say how to build a client for each mode (:meth:`_make_sync`,
    :meth:`_make_async`); everything else is here, once.
    """

    blocking = True
    refreshes_on_read = True
    unavailable_errors: tuple[type[BaseException], ...] = (
        redis.exceptions.ConnectionError,  # includes MasterNotFoundError, auth failures
        redis.exceptions.TimeoutError,
        redis.exceptions.BusyLoadingError,  # LOADING: a restarted server reading its data
        redis.exceptions.ReadOnlyError,  # a demoted master that we still talk to
        redis.exceptions.ClusterDownError,  # CLUSTERDOWN / MASTERDOWN
        # maxmemory reached: writes are refused (whole: a script stops at its first write).
        redis.exceptions.OutOfMemoryError,
        ConnectionError,
        TimeoutError,
    )
    provider_name: ClassVar[str] = "redis"

    def __init__(self, config: Any = None, *, key_prefix: str | None = None) -> None:
        """``config`` is any ``providerConfig`` form (see :func:`parse_redis_config`) or a
        redis-py client; ``key_prefix`` overrides the configured one."""
        self._lock = threading.Lock()
        self._client: Any = None
        self._aclients: dict[asyncio.AbstractEventLoop, _AsyncClient] = {}
        self._prefix_override = key_prefix
        # A cluster or sentinel provider made by name gets its addresses from configure().
        self._configured = config is not None
        if config is None and self.provider_name != "redis":
            self._set_options(RedisOptions())
        else:
            self._set_options(parse_redis_config(config, self.provider_name))

    def _set_options(self, options: RedisOptions) -> None:
        if self._prefix_override is not None:
            options = replace(options, key_prefix=self._prefix_override)
        self.options = options
        self.key_prefix = options.key_prefix
        self._pattern = _match_pattern(options.key_prefix)
        # An application's client serves its own mode. The other mode reaches a sync one
        # through a thread; an asyncio one is bound to its loop, so sync calls are refused.
        self._sync_only = isinstance(options.client, _SYNC_TYPES)
        self._async_only = isinstance(options.client, _ASYNC_TYPES)

    def configure(self, config: Any) -> None:
        """Apply the manager's ``providerConfig`` (any form :func:`parse_redis_config`
        takes). An empty one keeps what the constructor was given."""
        empty = config is None or (isinstance(config, str) and not config.strip())
        if empty and (self._configured or self.provider_name == "redis"):
            return
        options = parse_redis_config(config, self.provider_name)
        self.close()
        # Async clients made with the old settings must not serve the new ones. (Each
        # should have been closed in its loop: configure before use, as the manager does.)
        self._aclients.clear()
        self._configured = True
        self._set_options(options)

    # -- clients: built on first use, so configuring opens no connection -----------------

    def _retry(self, module: Any) -> Any:
        return module.Retry(ExponentialBackoff(cap=0.5, base=0.05), self.options.max_retries)

    def _connection_kwargs(self) -> dict[str, Any]:
        options = self.options
        return {
            "username": options.username,
            "password": options.password,
            "socket_timeout": options.socket_timeout,
            "socket_connect_timeout": options.connect_timeout,
            "health_check_interval": options.health_check_interval,
            **options.connection,
        }

    @abstractmethod
    def _make_sync(self) -> Any:
        """A blocking client for this provider's servers (or the application's own)."""

    @abstractmethod
    def _make_async(self) -> _AsyncClient:
        """An asyncio client for the running loop (or the application's own)."""

    def _sync(self) -> Any:
        client = self._client
        if client is None:
            if self._async_only:
                raise SessionModeError(
                    f"{type(self).__name__} was given only an asyncio client: use the "
                    "async API (the ASGI middleware, the a-prefixed methods) or give it a "
                    "sync client"
                )
            with self._lock:
                if self._client is None:
                    self._client = self._make_sync()
                client = self._client
        return client

    def _async(self) -> _AsyncClient:
        loop = asyncio.get_running_loop()
        entry = self._aclients.get(loop)
        if entry is None:
            with self._lock:
                # A closed loop's client can never be used, nor closed, again: drop it.
                for old in [old for old in self._aclients if old.is_closed()]:
                    del self._aclients[old]
                entry = self._aclients[loop] = self._make_async()
        return entry

    # -- sending one command: the only mode-specific code --------------------------------

    def _exec(self, *command: Any, **options: Any) -> Any:
        # Pools are bounded and fail, rather than wait, when full: a waiting pool (or a
        # semaphore) costs every command a lock round, while a full pool is rare. Only
        # then does a caller wait, polling, for up to poolTimeout.
        try:
            return self._sync().execute_command(*command, **options)
        except redis.exceptions.MaxConnectionsError:
            pass  # raised while taking a connection: the command was not sent
        deadline = time.monotonic() + self.options.pool_timeout
        while time.monotonic() < deadline:
            time.sleep(_POOL_POLL)
            try:
                return self._sync().execute_command(*command, **options)
            except redis.exceptions.MaxConnectionsError:
                continue
        raise self._pool_exhausted()

    async def _aexec(self, *command: Any, **options: Any) -> Any:
        if self._sync_only:
            return await asyncio.to_thread(self._exec, *command, **options)
        client, limit = self._async()
        if limit is None:
            return await client.execute_command(*command, **options)
        if limit.locked():  # wait for a free slot, as a blocking pool waits for a connection
            try:
                async with asyncio.timeout(self.options.pool_timeout):
                    await limit.acquire()
            except TimeoutError:
                raise self._pool_exhausted() from None
        else:
            await limit.acquire()
        try:
            return await client.execute_command(*command, **options)
        finally:
            limit.release()

    def _pool_exhausted(self) -> redis.exceptions.ConnectionError:
        return redis.exceptions.ConnectionError(
            f"no free connection within {self.options.pool_timeout:g} s "
            f"(poolsize {self.options.pool_size})"
        )

    def _eval(self, script: _Script, key: str, *args: Any) -> Any:
        try:
            return self._exec("EVALSHA", script.sha, 1, key, *args)
        except NoScriptError:  # first use on this server (or after a restart): send it
            return self._exec("EVAL", script.source, 1, key, *args)

    async def _aeval(self, script: _Script, key: str, *args: Any) -> Any:
        try:
            return await self._aexec("EVALSHA", script.sha, 1, key, *args)
        except NoScriptError:
            return await self._aexec("EVAL", script.source, 1, key, *args)

    def _scan_targets(self) -> list[dict[str, Any]]:
        """Extra arguments of the SCANs that together cover every session."""
        return [{}]

    async def _ascan_targets(self) -> list[dict[str, Any]]:
        return [{}]

    # -- the primitives -----------------------------------------------------------------

    def read(self, sid: str) -> Record | None:
        """Return the live record and, if a tenth of its idle span has passed, restore the
        span: one round trip."""
        return _record(self._eval(_READ, self.key_prefix + sid))

    async def aread(self, sid: str) -> Record | None:
        """Async twin of :meth:`read`."""
        return _record(await self._aeval(_READ, self.key_prefix + sid))

    def create(self, sid: str, record: Record) -> bool:
        """``SET NX PX``: store only if no live record has this ID."""
        return bool(self._exec("SET", self.key_prefix + sid, *_create_args(record)))

    async def acreate(self, sid: str, record: Record) -> bool:
        """Async twin of :meth:`create`."""
        return bool(await self._aexec("SET", self.key_prefix + sid, *_create_args(record)))

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """Compare-and-set in a Lua script: write only over a live record at
        ``expected_version``."""
        args = _update_args(record, expected_version)
        return bool(self._eval(_UPDATE, self.key_prefix + sid, *args) == 1)

    async def aupdate(self, sid: str, record: Record, expected_version: int) -> bool:
        """Async twin of :meth:`update`."""
        args = _update_args(record, expected_version)
        return bool(await self._aeval(_UPDATE, self.key_prefix + sid, *args) == 1)

    def touch(self, sid: str, expires_at: float) -> bool:
        """Move the live record's deadline (a Lua script: the TTL and the stored
        deadline together)."""
        return bool(self._eval(_TOUCH, self.key_prefix + sid, *_touch_args(expires_at)) == 1)

    async def atouch(self, sid: str, expires_at: float) -> bool:
        """Async twin of :meth:`touch`."""
        args = _touch_args(expires_at)
        return bool(await self._aeval(_TOUCH, self.key_prefix + sid, *args) == 1)

    def delete(self, sid: str) -> None:
        """``DEL``."""
        self._exec("DEL", self.key_prefix + sid)

    async def adelete(self, sid: str) -> None:
        """Async twin of :meth:`delete`."""
        await self._aexec("DEL", self.key_prefix + sid)

    def count(self) -> int:
        """Count live sessions with ``SCAN MATCH prefix*``: O(keys in the database)."""
        plan = _count_plan(self._pattern, self._scan_targets())
        try:
            step = next(plan)
            while True:
                step = plan.send(self._exec(*step[0], **step[1]))
        except StopIteration as done:
            return int(done.value)

    async def acount(self) -> int:
        """Async twin of :meth:`count`."""
        plan = _count_plan(self._pattern, await self._ascan_targets())
        try:
            step = next(plan)
            while True:
                step = plan.send(await self._aexec(*step[0], **step[1]))
        except StopIteration as done:
            return int(done.value)

    def gc(self) -> int:
        """Nothing to do: Redis expires sessions by their TTL."""
        return 0

    async def agc(self) -> int:
        """Async twin of :meth:`gc`."""
        return 0

    # -- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connections this provider opened; an application's own client is
        left open. Async clients are closed by :meth:`aclose`, in their event loop."""
        with self._lock:
            client, self._client = self._client, None
            for old in [old for old in self._aclients if old.is_closed()]:
                del self._aclients[old]
        if client is not None and client is not self.options.client:
            self._close_sync(client)

    async def aclose(self) -> None:
        """Close this event loop's async client, and the sync one."""
        entry = self._aclients.pop(asyncio.get_running_loop(), None)
        if entry is not None and entry.client is not self.options.client:
            await self._close_async(entry.client)
        self.close()

    def _close_sync(self, client: Any) -> None:
        client.close()

    async def _close_async(self, client: Any) -> None:
        await client.aclose()


class RedisProvider(_RedisBase):
    """Sessions on one Redis server (``Manager("redis", ...)``); Redis 2.6 or later.

    ``providerConfig`` is beego's ``"addr,poolsize,password[,dbnum[,idle_timeout[,...]]]"``
    (``"127.0.0.1:6379,100,astaxie,0"``), beego's JSON (``save_path``, ``poolsize``,
    ``password``, ``db_num``, ``idle_timeout``, ``idle_check_frequency``,
    ``max_retries``) plus ``username``, ``key_prefix`` (default ``"websession:"``),
    ``socket_timeout``, ``connect_timeout`` and ``pool_timeout``, a
    ``redis://``/``rediss://``/``unix://`` URL, or a ``redis.Redis`` or
    ``redis.asyncio.Redis`` client the application owns (as the constructor argument or
    ``{"client": client}``). Connections are opened on first use, from a pool bounded by
    ``poolsize`` (default 100) where callers wait up to ``pool_timeout`` seconds for a free
    connection rather than open more.

    Round trips per request: none if the session is not used, one to read it (the read
    also restores the idle deadline), one more to write it. :meth:`count`
    (``session_all``) walks the keyspace with ``SCAN``: O(keys in the database, not just
    sessions), 1000 keys per round trip — milliseconds for thousands of keys, seconds for
    tens of millions; keep sessions in their own database to make it cheap. :meth:`gc`
    does nothing: Redis expires keys by their TTL.

    A session read in the last moments of its absolute lifetime keeps its key until its
    idle span passes (the engine already treats it as gone): :meth:`count` may include it
    meanwhile.
    """

    provider_name = "redis"

    def _pool_kwargs(self, connection_module: Any, retry_module: Any) -> dict[str, Any]:
        options = self.options
        kwargs = self._connection_kwargs()
        kwargs.update(max_connections=options.pool_size, db=options.db,
                      retry=self._retry(retry_module))
        if options.unix_socket:
            kwargs.update(path=options.unix_socket,
                          connection_class=connection_module.UnixDomainSocketConnection)
        else:
            kwargs["host"], kwargs["port"] = options.addresses[0]
            if options.ssl:
                kwargs["connection_class"] = connection_module.SSLConnection
        return kwargs

    def _make_sync(self) -> Any:
        if self.options.client is not None:
            return self.options.client
        pool = redis.ConnectionPool(**self._pool_kwargs(sconnection, sretry))
        return redis.Redis.from_pool(pool)

    def _make_async(self) -> _AsyncClient:
        if self.options.client is not None:
            return _AsyncClient(self.options.client, None)
        pool = aredis.ConnectionPool(**self._pool_kwargs(aconnection, aretry))
        return _AsyncClient(aredis.Redis.from_pool(pool), asyncio.Semaphore(self.options.pool_size))


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
    O(keys in the cluster), 1000 keys per round trip, masters one after another.
    """

    provider_name = "redis_cluster"
    _initialized: weakref.WeakSet[Any]
    _init_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]

    def __init__(self, config: Any = None, *, key_prefix: str | None = None) -> None:
        self._initialized = weakref.WeakSet()
        self._init_locks = weakref.WeakKeyDictionary()
        super().__init__(config, key_prefix=key_prefix)

    unavailable_errors = (
        *_RedisBase.unavailable_errors,
        # "cannot be connected", slots not covered: the cluster client's own errors.
        redis.exceptions.RedisClusterException,
    )

    def _cluster_kwargs(self, node_class: Any, retry_module: Any) -> dict[str, Any]:
        options = self.options
        kwargs = self._connection_kwargs()
        kwargs.update(
            startup_nodes=[node_class(host, port) for host, port in options.addresses],
            # One more than the in-flight bound: a topology refresh borrows a connection.
            max_connections=options.pool_size + 1,
            retry=self._retry(retry_module),
        )
        if options.ssl:
            kwargs["ssl"] = True
        return kwargs

    def _make_sync(self) -> Any:
        if self.options.client is not None:
            return self.options.client
        return scluster.RedisCluster(**self._cluster_kwargs(scluster.ClusterNode, sretry))

    def _make_async(self) -> _AsyncClient:
        if self.options.client is not None:
            return _AsyncClient(self.options.client, None)
        client = acluster.RedisCluster(**self._cluster_kwargs(acluster.ClusterNode, aretry))
        return _AsyncClient(client, asyncio.Semaphore(self.options.pool_size))

    async def _aexec(self, *command: Any, **options: Any) -> Any:
        if not self._sync_only:
            client = self._async().client
            if client not in self._initialized:
                # Commands racing into a cold asyncio cluster client each start its
                # initialisation, and one that fails makes the others' half-open
                # connections fail too: initialise once per client, the rest wait.
                async with self._init_lock():
                    if client not in self._initialized:
                        await client.initialize()
                        self._initialized.add(client)
        return await super()._aexec(*command, **options)

    def _init_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        with self._lock:
            lock = self._init_locks.get(loop)
            if lock is None:
                lock = self._init_locks[loop] = asyncio.Lock()
            return lock

    def _scan_targets(self) -> list[dict[str, Any]]:
        return [{"target_nodes": node} for node in self._sync().get_primaries()]

    async def _ascan_targets(self) -> list[dict[str, Any]]:
        if self._sync_only:
            return await asyncio.to_thread(self._scan_targets)
        client = self._async().client
        await client.initialize()  # learns the topology the first time; a no-op afterwards
        return [{"target_nodes": node} for node in client.get_primaries()]


class _SentinelConnection(ssentinel.SentinelManagedConnection):
    """Asks the sentinels for the master on every reconnect, retries included.

    redis-py reconnects a dropped connection inside its retry loop to the address it had
    (redis/redis-py#3874), so after a failover a write first tries the demoted master,
    gets READONLY, and fails once its retries are spent; reconnecting through
    :meth:`connect` finds the new master instead.
    """

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        this: Any = self  # redis-py's connection methods are untyped
        if not this._sock:
            this.connect()
        base: Any = super()
        base.send_packed_command(command, check_health)


class _SentinelSSLConnection(_SentinelConnection, ssentinel.SentinelManagedSSLConnection):
    """:class:`_SentinelConnection` over TLS."""


class _AsyncSentinelConnection(asentinel.SentinelManagedConnection):
    """The asyncio twin of :class:`_SentinelConnection`."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        this: Any = self
        if not this.is_connected:
            await this.connect()
        await super().send_packed_command(command, check_health)


class _AsyncSentinelSSLConnection(_AsyncSentinelConnection,
                                  asentinel.SentinelManagedSSLConnection):
    """:class:`_AsyncSentinelConnection` over TLS."""


class _BlockingSentinelPool(ssentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """A sentinel-managed pool that waits for a free connection instead of failing."""


class _AsyncBlockingSentinelPool(asentinel.SentinelConnectionPool,
                                 aredis.BlockingConnectionPool):
    """The asyncio twin of :class:`_BlockingSentinelPool`."""


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

    def _master(self, sentinel_module: Any, retry_module: Any, pool_class: Any,
                connection_class: Any) -> Any:
        options = self.options
        sentinel = options.client
        if isinstance(sentinel, redis.Redis | aredis.Redis):
            return sentinel  # the application's own master client
        if sentinel is None:
            sentinel = sentinel_module.Sentinel(list(options.addresses), sentinel_kwargs={
                "socket_timeout": options.socket_timeout,
                "socket_connect_timeout": options.connect_timeout,
                "password": options.sentinel_password,
                # A sentinel that does not answer: ask the next one at once.
                "retry": retry_module.Retry(ExponentialBackoff(cap=0.1, base=0.01), 0),
            })
        kwargs = self._connection_kwargs()
        kwargs.update(db=options.db, max_connections=options.pool_size,
                      timeout=options.pool_timeout, retry=self._retry(retry_module),
                      connection_class=connection_class)
        return sentinel.master_for(options.master_name, connection_pool_class=pool_class,
                                   **kwargs)

    def _make_sync(self) -> Any:
        connection = _SentinelSSLConnection if self.options.ssl else _SentinelConnection
        return self._master(ssentinel, sretry, _BlockingSentinelPool, connection)

    def _make_async(self) -> _AsyncClient:
        connection = (_AsyncSentinelSSLConnection if self.options.ssl
                      else _AsyncSentinelConnection)
        client = self._master(asentinel, aretry, _AsyncBlockingSentinelPool, connection)
        return _AsyncClient(client, None)

    def _close_sync(self, client: Any) -> None:
        client.close()
        sentinel = client.connection_pool.sentinel_manager
        if sentinel is not self.options.client:  # we made it: close its sentinel clients
            for one in sentinel.sentinels:
                one.close()

    async def _close_async(self, client: Any) -> None:
        await client.aclose()
        sentinel = client.connection_pool.sentinel_manager
        if sentinel is not self.options.client:
            for one in sentinel.sentinels:
                await one.aclose()
