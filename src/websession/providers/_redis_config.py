"""The Redis providers' ``providerConfig``: every accepted form, parsed into
:class:`RedisOptions`.

Each provider class has its own parser: :class:`RedisConfigParser` reads the forms of one
server, :class:`ClusterConfigParser` and :class:`SentinelConfigParser` change what differs
(address lists, the sentinel's URL and master name, default port, checks, client types).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar
from urllib.parse import unquote

from ..exceptions import ConfigurationError
from ._options import DEFAULT_OPERATION_TIMEOUT, parse_address, parse_duration, parse_options
from ._redis_cache import CacheSettings
from ._redis_clients import ASYNC, SYNC

__all__ = [
    "ClusterConfigParser",
    "RedisConfigParser",
    "RedisOptions",
    "SentinelConfigParser",
    "parse_redis_config",
]

#: beego's default pool size (``MaxPoolSize``).
DEFAULT_POOL_SIZE = 100
DEFAULT_PREFIX = "websession:"
DEFAULT_MASTER_NAME = "mymaster"


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """A parsed ``providerConfig``; every provider form ends up as one of these.

    ``addresses`` holds ``(host, port)`` pairs (one for a single server, the seed nodes of
    a cluster, or the sentinels). ``connection`` holds further redis-py connection
    arguments, from a URL's query string. ``operation_timeout`` bounds each command in
    all — the wait for a pooled connection, connecting, sending, receiving and retries —
    and caps the other timeouts.
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
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT
    health_check_interval: float = 0.0
    connection: Mapping[str, Any] = field(default_factory=dict)
    client: Any = None
    #: Client-side caching (``client_cache``, ``client_cache_entries``,
    #: ``client_cache_bytes``): see :mod:`._redis_cache`.
    client_cache: CacheSettings = field(default_factory=CacheSettings)


# JSON keys: beego's (save_path, poolsize, password, db_num, idle_timeout,
# idle_check_frequency, max_retries, master_name) and websession's. parse_options
# matches them case-insensitively and ignores underscores, so "dbNum" and "DbNum" work.
_KNOWN: dict[str, type] = {
    "save_path": object, "conn": object, "addr": object, "url": object, "poolsize": int,
    "username": str, "password": str, "db_num": int, "db": int, "idle_timeout": object,
    "idle_check_frequency": object, "max_retries": int, "master_name": str,
    "sentinel_password": str, "key_prefix": str, "prefix": str, "socket_timeout": object,
    "connect_timeout": object, "pool_timeout": object, "operation_timeout": object,
    "client": object,
    "client_cache": bool, "client_cache_entries": int, "client_cache_bytes": int,
}
# Keys (JSON or beego's v1 string) and the RedisOptions fields they set, by kind.
_WHOLE = {"poolsize": "pool_size", "db_num": "db", "db": "db", "max_retries": "max_retries"}
_TEXT = {"username": "username", "password": "password", "master_name": "master_name",
         "sentinel_password": "sentinel_password", "key_prefix": "key_prefix",
         "prefix": "key_prefix"}
# idle_check_frequency drives go-redis's idle-connection reaper; redis-py has none, so it
# is checked and dropped.
_SECONDS: dict[str, str | None] = {
    "idle_timeout": "health_check_interval", "socket_timeout": "socket_timeout",
    "connect_timeout": "connect_timeout", "pool_timeout": "pool_timeout",
    "operation_timeout": "operation_timeout", "idle_check_frequency": None,
}
_URL_SCHEMES = ("redis://", "rediss://", "unix://")
_SENTINEL_SCHEMES = ("redis+sentinel://", "rediss+sentinel://")
_parse_url: Any = SYNC.connection.parse_url  # untyped in redis-py


def _connection_options() -> set[str]:
    """What a URL's query string may pass on to redis-py's connections."""
    names: set[str] = set()
    for cls in (SYNC.connection.AbstractConnection, SYNC.connection.Connection,
                SYNC.connection.SSLConnection):
        names.update(inspect.signature(cls.__init__).parameters)
    return names - {"self", "args", "kwargs", "host", "port", "path"}


class RedisConfigParser:
    """The forms ``redis`` (one server) takes; subclasses change what differs for theirs.

    :meth:`parse` takes beego's v1 string, beego's JSON or a mapping with its keys, a
    ``redis://``/``rediss://``/``unix://`` URL, or a redis-py client.
    """

    provider: ClassVar[str] = "redis"
    default_port: ClassVar[int] = 6379
    #: Whether an empty ``providerConfig`` is refused: only one server has a default.
    addresses_required: ClassVar[bool] = False
    #: beego's v1 string: its comma-separated fields, in order.
    seed_fields: ClassVar[tuple[str, ...]] = (
        "save_path", "poolsize", "password", "db_num", "idle_timeout",
        "idle_check_frequency", "max_retries",
    )
    #: The application's own clients this provider accepts.
    client_types: ClassVar[tuple[type, ...]] = (SYNC.redis.Redis, ASYNC.redis.Redis)
    #: Client-side caching when the configuration does not say.
    default_cache: ClassVar[CacheSettings] = CacheSettings()

    def __init__(self) -> None:
        self.where = f"providerConfig for {self.provider!r}"

    def fail(self, message: str, key: str | None = None) -> ConfigurationError:
        """An error naming this provider and ``key``."""
        return ConfigurationError(f"{self.where}: {message}", key=key)

    def parse(self, config: Any) -> RedisOptions:
        """Parse any accepted form into :class:`RedisOptions`; a malformed one is a
        :class:`~websession.ConfigurationError` naming the problem."""
        fields: dict[str, Any]
        if config is None or (isinstance(config, str) and not config.strip()):
            if self.addresses_required:
                raise self.fail("the server addresses are required, e.g. "
                                "'127.0.0.1:7000;127.0.0.1:7001'", "save_path")
            fields = {}
        elif isinstance(config, str) and config.strip().startswith("{"):
            fields = self._from_mapping(config)  # JSON: parse_options decodes it
        elif isinstance(config, str):
            text = config.strip()
            if text.startswith(_URL_SCHEMES + _SENTINEL_SCHEMES):
                fields = self.addresses(text)
            else:
                fields = self._from_seed_string(text)
        elif isinstance(config, Mapping):
            fields = self._from_mapping(config)
        else:
            fields = {"client": config}
        for name in ("username", "password"):
            if fields.get(name) == "":
                fields[name] = None  # as in beego: an empty password means none
        fields.setdefault("client_cache", self.default_cache)
        options = RedisOptions(**fields)
        self.check(options)
        return options

    def addresses(self, text: str) -> dict[str, Any]:
        """Fields from beego's ``save_path``: one ``host:port`` or one URL."""
        items = self._items(text)
        if len(items) > 1:
            if any(item.strip().startswith(_URL_SCHEMES) for item in items):
                raise self.fail("one URL only (use redis_cluster for several nodes)",
                                "save_path")
            raise self.fail("one address only (use redis_cluster or redis_sentinel for "
                            "several)", "save_path")
        return self._address_list(items)

    def check(self, options: RedisOptions) -> None:
        """Refuse settings this provider cannot use."""
        if options.pool_size < 1:
            raise self.fail("poolsize must be at least 1", "poolsize")
        if not options.operation_timeout > 0:
            raise self.fail("operation_timeout must be positive", "operation_timeout")
        client = options.client
        if client is not None and not isinstance(client, self.client_types):
            names = ", ".join(f"{t.__module__}.{t.__qualname__}" for t in self.client_types)
            raise self.fail(f"a client must be one of {names}; got "
                            f"{type(client).__module__}.{type(client).__qualname__}",
                            "client")

    # -- the pieces the forms share -------------------------------------------------------

    def _items(self, text: str) -> list[str]:
        items = [item for item in text.strip().split(";") if item.strip()]
        if not items:
            raise self.fail("no address given", "save_path")
        return items

    def _address_list(self, items: list[str]) -> dict[str, Any]:
        """Fields from ``host:port`` entries, or from URLs (the first one's credentials)."""
        if not any(item.strip().startswith(_URL_SCHEMES) for item in items):
            return {"addresses": tuple(parse_address(item, self.default_port, key="save_path",
                                                     where=self.where) for item in items)}
        merged: dict[str, Any] = {}
        nodes: list[tuple[str, int]] = []
        for item in items:
            if not item.strip().startswith(_URL_SCHEMES):
                raise self.fail(f"mixed URLs and addresses: {item!r}", "save_path")
            fields = self._from_url(item.strip())
            nodes.extend(fields.pop("addresses", ()))
            merged = {**fields, **merged}  # the first URL's credentials win
        if nodes:
            merged["addresses"] = tuple(nodes)
        return merged

    def _from_url(self, url: str) -> dict[str, Any]:
        """Fields of a redis://, rediss:// or unix:// URL."""
        try:
            parsed = dict(_parse_url(url))
        except ValueError as exc:
            raise self.fail(f"invalid URL: {exc}", "save_path") from None
        connection_class = parsed.pop("connection_class", None)
        fields: dict[str, Any] = {
            "ssl": connection_class is not None
            and issubclass(connection_class, SYNC.connection.SSLConnection),
        }
        path = parsed.pop("path", None)
        if path:
            fields["unix_socket"] = path
        else:
            fields["addresses"] = ((str(parsed.pop("host", "localhost")),
                                    int(parsed.pop("port", self.default_port))),)
        for name in ("username", "password"):
            if parsed.get(name) is not None:
                fields[name] = parsed.pop(name)
            parsed.pop(name, None)
        if "db" in parsed:
            fields["db"] = int(parsed.pop("db"))
        for name in ("max_connections", "poolsize"):
            if name in parsed:
                fields["pool_size"] = self._whole(name, str(parsed.pop(name)))
        for name in ("key_prefix", "prefix"):
            if name in parsed:
                fields["key_prefix"] = unquote(str(parsed.pop(name)))
        if "operation_timeout" in parsed:
            fields["operation_timeout"] = self._seconds("operation_timeout",
                                                        parsed.pop("operation_timeout"))
        unknown = sorted(set(parsed) - _connection_options())
        if unknown:
            raise self.fail(f"unknown URL option {unknown[0]!r}", unknown[0])
        fields["connection"] = parsed  # the rest of the query string, for redis-py
        return fields

    def _from_seed_string(self, text: str) -> dict[str, Any]:
        """beego's v1 string (:attr:`seed_fields`); empty fields keep their defaults."""
        parts = [part.strip() for part in text.split(",")]
        names = self.seed_fields
        if len(parts) > len(names):
            raise self.fail(f"too many comma-separated fields ({len(parts)}; at most "
                            f"{len(names)}: {','.join(names)})")
        given = dict(zip(names, parts, strict=False))
        fields = self.addresses(given.pop("save_path"))
        for key, value in given.items():
            if value == "":
                continue
            if key in _WHOLE:
                fields[_WHOLE[key]] = self._whole(key, value)
            elif key in _TEXT:
                fields[_TEXT[key]] = value
            elif key == "idle_timeout":  # the seed string's idle_check_frequency: unchecked
                fields["health_check_interval"] = self._seconds(key, value)
        return fields

    def _from_mapping(self, config: Mapping[str, Any] | str) -> dict[str, Any]:
        options = parse_options(config, _KNOWN, provider=self.provider)
        fields: dict[str, Any] = {}
        addresses = [options[k] for k in ("save_path", "conn", "addr", "url") if k in options]
        if len(addresses) > 1:
            raise self.fail("give the address once (save_path, conn, addr or url)",
                            "save_path")
        if addresses:
            value = addresses[0]
            if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                value = ";".join(value)
            if not isinstance(value, str):
                raise self.fail(f"save_path must be a string, got {value!r}", "save_path")
            fields.update(self.addresses(value))
        if "client" in options:
            fields["client"] = options["client"]
        for table in (_WHOLE, _TEXT):  # in table order: "db" over "db_num", "prefix" over
            for key, name in table.items():  # "key_prefix", whatever the config's order
                if key in options:
                    fields[name] = options[key]
        for key, seconds_field in _SECONDS.items():
            if key in options:
                seconds = self._seconds(key, options[key])
                if seconds_field is not None:
                    fields[seconds_field] = seconds
        cache = self.client_cache(options)
        if cache is not None:
            fields["client_cache"] = cache
        return fields

    def client_cache(self, options: Mapping[str, Any]) -> CacheSettings | None:
        """The cache settings the ``client_cache*`` keys give (``None``: none given)."""
        given = {name: options[key] for key, name in (
            ("client_cache", "enabled"), ("client_cache_entries", "max_entries"),
            ("client_cache_bytes", "max_bytes")) if key in options}
        if not given:
            return None
        for key in ("client_cache_entries", "client_cache_bytes"):
            if key in options and options[key] < 1:
                raise self.fail(f"{key} must be at least 1", key)
        return replace(self.default_cache, **given)

    def _whole(self, key: str, text: str) -> int:
        try:
            number = int(text.strip())
        except ValueError:
            raise self.fail(f"{key} must be a whole number, got {text!r}", key) from None
        if number < 0:
            raise self.fail(f"{key} must not be negative, got {number}", key)
        return number

    def _seconds(self, key: str, value: Any) -> float:
        if isinstance(value, str) and not value.strip():
            value = 0  # an empty duration has always meant none
        return parse_duration(value, key=key, where=self.where)


class ClusterConfigParser(RedisConfigParser):
    """The forms ``redis_cluster`` takes: seed nodes as a ``;`` list of addresses or URLs,
    or a ``RedisCluster`` client."""

    provider = "redis_cluster"
    addresses_required = True
    client_types = (SYNC.cluster.RedisCluster, ASYNC.cluster.RedisCluster)
    # Tracking is per node: a cache would need a tracking connection to every master,
    # kept in step with failovers and resharding. Not done: a cluster does not cache.
    default_cache = CacheSettings(enabled=False)

    def addresses(self, text: str) -> dict[str, Any]:
        """Fields from the seed nodes: ``host:port`` entries or URLs, separated by ``;``."""
        return self._address_list(self._items(text))

    def check(self, options: RedisOptions) -> None:
        """Refuse what a cluster cannot do: another database, a unix socket."""
        super().check(options)
        if options.db:
            raise self.fail("a Redis Cluster has only database 0", "db_num")
        if options.unix_socket:
            raise self.fail("a Redis Cluster is not reached through a unix socket",
                            "save_path")
        if options.client_cache.enabled:
            raise self.fail("client_cache: client-side caching is not available on a Redis "
                            "Cluster (tracking is per node)",
                            "client_cache")


class SentinelConfigParser(RedisConfigParser):
    """The forms ``redis_sentinel`` takes: sentinel addresses with the master's name after
    ``dbnum`` in beego's v1 string, a ``redis+sentinel://`` URL, or a ``Sentinel`` (or the
    master's ``Redis``) client."""

    provider = "redis_sentinel"
    default_port = 26379
    addresses_required = True
    seed_fields = ("save_path", "poolsize", "password", "db_num", "master_name",
                   "idle_timeout", "idle_check_frequency", "max_retries")
    client_types = (SYNC.redis.Redis, ASYNC.redis.Redis, SYNC.sentinel.Sentinel,
                    ASYNC.sentinel.Sentinel)

    def addresses(self, text: str) -> dict[str, Any]:
        """Fields from a ``redis+sentinel://`` URL or a ``;`` list of sentinels."""
        text = text.strip()
        if text.startswith(_SENTINEL_SCHEMES):
            return self._from_sentinel_url(text)
        items = self._items(text)
        if any(item.strip().startswith(_URL_SCHEMES) for item in items):
            raise self.fail("a sentinel URL is redis+sentinel://host:port,.../master",
                            "save_path")
        return self._address_list(items)

    def check(self, options: RedisOptions) -> None:
        """Refuse an empty master name."""
        super().check(options)
        if not options.master_name:
            raise self.fail("master_name is required", "master_name")

    def _from_sentinel_url(self, url: str) -> dict[str, Any]:
        """``redis+sentinel://[user:password@]host:port[,host:port...]/master[/db]``."""
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
        fields["addresses"] = tuple(
            parse_address(h, self.default_port, key="save_path", where=self.where)
            for h in hosts.split(",") if h.strip())
        parts = [p for p in path.split("/") if p]
        if parts:
            fields["master_name"] = unquote(parts[0])
        if len(parts) > 1:
            fields["db"] = self._whole("db", parts[1])
        for item in filter(None, query.split("&")):
            name, _, value = item.partition("=")
            if name != "sentinel_password":
                raise self.fail(f"unknown URL option {name!r} (known: sentinel_password)",
                                name)
            fields["sentinel_password"] = unquote(value) or None
        return fields


_PARSERS = {parser.provider: parser for parser in (
    RedisConfigParser(), ClusterConfigParser(), SentinelConfigParser())}


def parse_redis_config(config: Any, provider: str = "redis") -> RedisOptions:
    """Parse any accepted ``providerConfig`` form for ``provider`` ("redis",
    "redis_cluster" or "redis_sentinel") into :class:`RedisOptions`.

    Accepted: beego's v1 string (``"127.0.0.1:6379,100,astaxie,0"``), beego's JSON or a
    mapping with the same keys, a ``redis://``/``rediss://``/``unix://`` URL (a ``;``
    list of them for a cluster; ``redis+sentinel://host:port,.../master`` for Sentinel),
    or a redis-py client the application owns. A malformed value is a
    :class:`~websession.ConfigurationError` naming the problem.
    """
    parser = _PARSERS.get(provider)
    if parser is None:
        raise ConfigurationError(f"no Redis provider is named {provider!r} "
                                 f"(known: {', '.join(_PARSERS)})")
    return parser.parse(config)
