"""The memcached provider (``memcached``, also beego's name ``memcache``), over pymemcache
(sync) and aiomcache (asyncio): ``pip install 'websession[memcached]'``.

A session is one memcached item under ``key_prefix + sid`` holding
``version:deadline:payload`` (the version the engine chose, the deadline exactly as the
engine gave it, then the codec's bytes), with a memcached expiry a second or two past the
deadline: memcached drops the item itself, so :meth:`~MemcachedProvider.gc` has nothing to
do, and a read checks the stored deadline, so an item in that last second reads as absent.

The primitives and their round trips:

* ``read``: one ``gets``.
* ``create``: ``add`` (stores only if the key is absent). If an item is there but past its
  deadline, a ``gets`` and a ``cas`` replace it; a live one is never overwritten.
* ``update``: ``gets``, then ``cas`` with the item's CAS token, only if the stored record is
  live and at the expected version. The token makes the check-and-write atomic: if anything
  wrote the item in between, memcached refuses the ``cas`` and the engine re-reads,
  re-applies its own changes and tries again. When the same request read the record, the
  ``gets`` is skipped: the ``cas`` carries the token that read got (a bounded map
  remembers it, used once), so a read-modify-write costs two round trips, as a peer's
  ``get`` + blind ``set`` does, and still cannot overwrite a change it did not see.
* ``touch``: ``gets`` then ``cas`` rewriting the stored deadline and the expiry together
  (memcached's own ``touch`` would move the expiry but leave the stored deadline behind);
  retried if another write slipped in between.
* ``delete``: ``delete``.
* ``count``: memcached has no way to count keys by prefix cheaply. It lists every item of
  every server with ``lru_crawler metadump hash`` (memcached 1.6.10 or later, LRU crawler
  on, as by default; older servers get ``metadump all``, whose walk of the LRUs can miss
  an item moved between them meanwhile), keeps this provider's keys and reads them in
  batches of 100 to count the live ones: O(items on the servers), for an admin page, not
  for every request.
  ``stats curr_items`` is no answer: it counts every application's items, and expired
  ones that memcached has not reclaimed yet. A server whose crawler is off or busy raises
  :class:`~websession.StoreUnavailableError` naming the reason.
* ``gc``: nothing; 0.

A session bigger than memcached keeps in one item (1 MB unless the server's ``-I`` says
otherwise) raises :class:`~websession.SerializationError` saying so, in both modes (the
middleware answers a clean 500); a lost or silent server raises
:class:`~websession.StoreUnavailableError` within ``timeout``.

Expiry: memcached takes an expiry of up to 30 days as seconds from now, and anything larger
as an absolute Unix time, so a deadline more than 30 days away is sent as its Unix time:
this relies on the memcached host's clock agreeing with this one's (NTP). Memcached's clock
ticks in whole seconds, hence the slack past the deadline.

Each primitive is a plan (:mod:`websession._plans`) written once: the sync primitives run it
over pymemcache's ``PooledClient`` (one per server, thread-safe), the ``a``-prefixed twins
over ``aiomcache`` clients (one per server per event loop; aiomcache supports ``gets`` and
``cas``), so the async path uses no threads — except ``acount``, an admin call, which runs
:meth:`~MemcachedProvider.count` in a worker thread (aiomcache cannot send
``lru_crawler``). With several servers a key's server is chosen by rendezvous hashing
(pymemcache's ``RendezvousHash``) in both modes, so both reach the same item; losing a
server loses its sessions, as with any memcached data.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import threading
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote_to_bytes

from ..exceptions import (
    ConfigurationError,
    MissingDependencyError,
    SerializationError,
    StoreUnavailableError,
)
from .base import BaseProvider, Record, dump_versioned, load_versioned

try:
    import aiomcache
    from pymemcache.client.base import PooledClient
    from pymemcache.client.rendezvous import RendezvousHash
    from pymemcache.exceptions import MemcacheServerError, MemcacheUnexpectedCloseError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("memcached", "memcached", "pymemcache") from exc

from .._loops import LoopLocal
from .._plans import Plan, adrive, drive
from ._options import (
    DEFAULT_OPERATION_TIMEOUT,
    OPERATION_TIMEOUT_KEY,
    parse_address,
    parse_duration,
    parse_operation_timeout,
    parse_options,
)

__all__ = ["MemcachedOptions", "MemcachedProvider", "parse_memcached_config"]

DEFAULT_PORT = 11211
#: The longest expiry memcached takes as seconds from now; longer ones are Unix times.
RELATIVE_EXPIRY_LIMIT = 30 * 24 * 3600
# Seconds of memcached expiry past the stored deadline: its clock ticks in whole seconds.
_SLACK = 1
# Tries of a gets/cas pair that keeps losing to other writes (touch, create over a dead item).
_ATTEMPTS = 16
# Keys per get_many while counting.
_COUNT_BATCH = 100
# CAS tokens remembered from reads (see _Tokens), per provider.
_TOKENS = 10_000

_WHERE = "providerConfig for 'memcached'"

# -- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class MemcachedOptions:
    """The settings of a :class:`MemcachedProvider`."""

    #: ``(host, port)`` of each server.
    servers: tuple[tuple[str, int], ...] = (("127.0.0.1", DEFAULT_PORT),)
    #: Prepended to every session ID to make its key.
    key_prefix: str = "websession:"
    #: Seconds a command may take before the store counts as unavailable.
    timeout: float = 5.0
    #: Seconds a connection may take to open.
    connect_timeout: float = 5.0
    #: Connections per server of each event loop's async clients (callers beyond it wait).
    pool_size: int = 100
    #: Seconds one command may take in all (connect, wait for a pooled connection, send,
    #: receive); the tighter of this and ``timeout``/``connectTimeout`` applies.
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT

    @property
    def command_timeout(self) -> float:
        """Seconds a command may take: ``timeout``, within ``operationTimeout``."""
        return min(self.timeout, self.operation_timeout)

    @property
    def open_timeout(self) -> float:
        """Seconds a connection may take to open: ``connectTimeout``, within
        ``operationTimeout``."""
        return min(self.connect_timeout, self.operation_timeout)


_KNOWN: dict[str, type | tuple[type, ...]] = {
    "servers": (str, list),
    "keyPrefix": str,
    "timeout": (int, float, str),
    "connectTimeout": (int, float, str),
    "poolSize": int,
    OPERATION_TIMEOUT_KEY: (int, float, str),
}


def _servers(value: Any, key: str) -> tuple[tuple[str, int], ...]:
    items: Iterable[Any] = value.split(";") if isinstance(value, str) else value
    servers = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(f"{_WHERE}: {key} must list 'host:port' strings, "
                                     f"got {item!r}", key=key)
        if item.strip():
            servers.append(parse_address(item, DEFAULT_PORT, key=key, where=_WHERE))
    if not servers:
        raise ConfigurationError(f"{_WHERE}: {key} names no server", key=key)
    return tuple(servers)


def _key_prefix(prefix: str) -> str:
    if any(ch.isspace() or ord(ch) < 33 or ord(ch) > 126 for ch in prefix) or len(prefix) > 150:
        raise ConfigurationError(
            f"{_WHERE}: keyPrefix must be printable ASCII without spaces, at most 150 "
            f"characters (memcached keys are), got {prefix!r}", key="keyPrefix")
    return prefix


def parse_memcached_config(config: Any) -> MemcachedOptions:
    """Read the memcached provider's ``providerConfig``.

    Forms: empty (``127.0.0.1:11211``); beego's ``;``-separated address list
    (``"127.0.0.1:11211;127.0.0.1:11212"``); or a JSON object / mapping with ``servers``
    (that string or a list of ``host:port``), ``keyPrefix`` (default ``"websession:"``),
    ``timeout`` and ``connectTimeout`` (seconds or Go durations, default 5 s) and
    ``poolSize`` (async connections per server and event loop, default 100) and
    ``operationTimeout`` (seconds or a Go duration one command may take in all, pool wait
    and connect included, default 5; the tighter of it and the other two applies). Keys match
    case-insensitively, with or without underscores. Errors name the key at fault.
    """
    if config is None or (isinstance(config, str) and not config.strip()):
        return MemcachedOptions()
    if isinstance(config, str) and not config.lstrip().startswith("{"):
        return MemcachedOptions(servers=_servers(config, "providerConfig"))
    raw = parse_options(config, _KNOWN, provider="memcached")
    options = MemcachedOptions()
    changes: dict[str, Any] = {}
    if "servers" in raw:
        changes["servers"] = _servers(raw["servers"], "servers")
    if "keyPrefix" in raw:
        changes["key_prefix"] = _key_prefix(raw["keyPrefix"])
    for name, attr in (("timeout", "timeout"), ("connectTimeout", "connect_timeout")):
        if name in raw:
            seconds = parse_duration(raw[name], key=name, where=_WHERE)
            if seconds <= 0:
                raise ConfigurationError(f"{_WHERE}: {name} must be positive", key=name)
            changes[attr] = seconds
    if "poolSize" in raw:
        if raw["poolSize"] < 1:
            raise ConfigurationError(f"{_WHERE}: poolSize must be at least 1", key="poolSize")
        changes["pool_size"] = raw["poolSize"]
    if OPERATION_TIMEOUT_KEY in raw:
        changes["operation_timeout"] = parse_operation_timeout(raw[OPERATION_TIMEOUT_KEY],
                                                               where=_WHERE)
    return replace(options, **changes)


# -- records <-> memcached values ---------------------------------------------------------


def _expiry(expires_at: float) -> int:
    """Memcached's exptime for a deadline: seconds from now, or a Unix time past 30 days."""
    seconds = max(1, math.ceil(expires_at - time.time()) + _SLACK)
    if seconds > RELATIVE_EXPIRY_LIMIT:
        return math.ceil(expires_at) + _SLACK
    return seconds


def _value(record: Record) -> bytes:
    return dump_versioned(record)


def _record(value: bytes | None) -> Record | None:
    """A stored value as a live record; ``None`` if absent, expired or foreign."""
    return None if value is None else load_versioned(value)


# -- the primitives, as plans -------------------------------------------------------------
#
# A step is (server index, command, key, *arguments); _SyncClients.send and
# _AsyncClients.send run it. "gets" answers (value, cas token) — (None, None) if absent —
# "add" and "cas" answer whether they stored.


class _Tokens:
    """The CAS token each recent read got, so that the update following it in the same
    request is one ``cas`` instead of ``gets`` + ``cas``: a read-modify-write then costs
    two round trips. A token is used once, and only for the version and while the deadline
    it was read with hold; if the item changed since (another write, a touch), memcached
    refuses the ``cas`` and the update fails as any lost race does: the engine reads again
    (a fresh token) and re-applies its changes. Bounded: the oldest entries go first."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[int, float, int]] = {}

    def remember(self, key: bytes, record: Record, token: int) -> None:
        """Keep ``token`` for the record just read under ``key``."""
        entries = self._entries
        if len(entries) >= _TOKENS:
            with contextlib.suppress(StopIteration, RuntimeError):  # another thread's
                entries.pop(next(iter(entries)), None)
        entries[key] = (record.version, record.expires_at, token)

    def take(self, key: bytes, version: int) -> int | None:
        """The token read with ``version`` under ``key``, forgotten; ``None`` if there is
        none, or the record's deadline has passed since."""
        entry = self._entries.pop(key, None)
        if entry is None or entry[0] != version or entry[1] <= time.time():
            return None
        return entry[2]


def _read(server: int, key: bytes, tokens: _Tokens) -> Plan[Record | None]:
    value, token = yield server, "gets", key
    record = _record(value)
    if record is not None:
        tokens.remember(key, record, token)
    return record


def _create(server: int, key: bytes, record: Record) -> Plan[bool]:
    value, expiry = _value(record), _expiry(record.expires_at)
    for _ in range(_ATTEMPTS):
        if (yield server, "add", key, value, expiry):
            return True
        stored, token = yield server, "gets", key
        if stored is None:
            continue  # gone in between: add again
        if _record(stored) is not None:
            return False  # a live record: never overwritten
        if (yield server, "cas", key, value, token, expiry):
            return True  # replaced a dead record memcached had not dropped yet
    return False


def _update(server: int, key: bytes, record: Record, expected_version: int,
            tokens: _Tokens) -> Plan[bool]:
    known = tokens.take(key, expected_version)
    if known is not None:  # read by this request: the item is as it was, or the cas fails
        return bool((yield server, "cas", key, _value(record), known,
                     _expiry(record.expires_at)))
    stored, token = yield server, "gets", key
    current = _record(stored)
    if current is None or current.version != expected_version:
        return False
    return bool((yield server, "cas", key, _value(record), token, _expiry(record.expires_at)))


def _touch(server: int, key: bytes, expires_at: float) -> Plan[bool]:
    expiry = _expiry(expires_at)
    for _ in range(_ATTEMPTS):
        stored, token = yield server, "gets", key
        current = _record(stored)
        if current is None:
            return False
        moved = _value(current._replace(expires_at=expires_at))
        if (yield server, "cas", key, moved, token, expiry):
            return True
    return False  # pragma: no cover - only under a storm of writes to one session


def _delete(server: int, key: bytes) -> Plan[None]:
    yield server, "delete", key


def _too_large(exc: Exception, value: bytes) -> SerializationError | None:
    """A server's refusal of an item too large as a :class:`SerializationError`; ``None``
    for any other error."""
    if "too large" not in str(exc):
        return None
    return SerializationError(
        f"the session is {len(value)} bytes stored: more than memcached keeps in one item "
        "(1 MB unless its -I option says otherwise); store less in the session")


# -- the clients --------------------------------------------------------------------------


class _SyncClients:
    """One pymemcache ``PooledClient`` per server, made on first use."""

    def __init__(self, options: MemcachedOptions) -> None:
        self.options = options
        self._clients: list[PooledClient | None] = [None] * len(options.servers)
        self._lock = threading.Lock()

    def client(self, server: int) -> PooledClient:
        """The pooled client of server number ``server``."""
        client = self._clients[server]
        if client is None:
            with self._lock:  # threads arriving together make one client
                client = self._clients[server]
                if client is None:
                    o = self.options
                    client = self._clients[server] = PooledClient(
                        o.servers[server], connect_timeout=o.open_timeout,
                        timeout=o.command_timeout, no_delay=True, default_noreply=False)
        return client

    def send(self, step: tuple[Any, ...]) -> Any:
        """Run one step (see the plans above)."""
        server, command, key, *args = step
        client = self.client(server)
        if command == "gets":
            value, token = client.gets(key)
            return value, None if token is None else int(token)  # as aiomcache answers
        try:
            if command == "add":
                return client.add(key, args[0], args[1], noreply=False)
            if command == "cas":
                return bool(client.cas(key, args[0], args[1], args[2], noreply=False))
        except MemcacheServerError as exc:
            error = _too_large(exc, args[0])
            if error is None:
                raise
            raise error from exc
        return client.delete(key, noreply=False)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            clients, self._clients = self._clients, [None] * len(self.options.servers)
        for client in clients:
            if client is not None:
                client.close()


class _AsyncClients:
    """One aiomcache ``Client`` per server for each event loop, made on first use."""

    def __init__(self, options: MemcachedOptions) -> None:
        self.options = options
        self._clients: LoopLocal[list[aiomcache.Client | None]] = LoopLocal(
            lambda: [None] * len(options.servers))

    def _client(self, clients: list[aiomcache.Client | None], server: int) -> aiomcache.Client:
        client = clients[server]
        if client is None:
            host, port = self.options.servers[server]
            client = clients[server] = aiomcache.Client(
                host, port, pool_size=self.options.pool_size, pool_minsize=1)
        return client

    async def send(self, step: tuple[Any, ...]) -> Any:
        """Run one step within the timeout (see the plans above)."""
        server, command, key, *args = step
        clients = self._clients.get()
        client = self._client(clients, server)
        try:
            async with asyncio.timeout(self.options.command_timeout):
                if command == "gets":
                    return await client.gets(key)
                if command == "add":
                    return await client.add(key, args[0], args[1])
                if command == "cas":
                    return await client.cas(key, args[0], args[1], args[2])
                return await client.delete(key)
        except aiomcache.exceptions.ClientException as exc:
            error = _too_large(exc, args[0] if args else b"")
            if error is None:
                raise
            raise error from exc
        except TimeoutError:
            # The connection may still get the late answer: drop this server's pool.
            if clients[server] is client:
                clients[server] = None
            await client.close()
            raise

    async def aclose(self) -> None:
        """Close the running loop's clients (those of other loops went with their loop)."""
        loop = asyncio.get_running_loop()
        for owner, clients in self._clients.take_all().items():
            if owner is loop:
                for client in clients:
                    if client is not None:
                        await client.close()


def _metadump(address: tuple[str, int], connect_timeout: float, timeout: float,
              what: bytes = b"hash") -> list[bytes]:
    """The lines ``lru_crawler metadump <what>`` answers, up to its last (``END``,
    ``DONE``, ``BUSY …`` or an error)."""
    with socket.create_connection(address, timeout=connect_timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"lru_crawler metadump %s\r\n" % what)
        buffer = bytearray()
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise MemcacheUnexpectedCloseError()
            buffer += chunk
            # Items come one a line ending in "\n" (1.6) or "\r\n" (older); the last
            # line (END, DONE, BUSY or an error) ends in "\r\n".
            if buffer.endswith(b"\r\n"):
                last = buffer[buffer.rfind(b"\n", 0, len(buffer) - 2) + 1:]
                if not last.startswith(b"key="):
                    return [line.rstrip(b"\r") for line in bytes(buffer).split(b"\n")[:-1]]


# -- the provider -------------------------------------------------------------------------


class MemcachedProvider(BaseProvider):
    """Sessions on one or more memcached servers (``Manager("memcached", ...)``).

    ``providerConfig`` is beego's ``"127.0.0.1:11211;127.0.0.1:11212"`` or a JSON object
    (see :func:`parse_memcached_config`). Round trips per request: none if the session is
    not used, one to read it, one more to write a changed one (``cas`` with the token the
    read got; ``gets`` then ``cas`` without one). See the
    module's docstring for what :meth:`count` costs and why.
    """

    blocking = True
    unavailable_errors: tuple[type[BaseException], ...] = (
        OSError,  # ConnectionError, TimeoutError, socket.gaierror
        MemcacheUnexpectedCloseError,
        asyncio.IncompleteReadError,
        aiomcache.exceptions.ClientException,
        StoreUnavailableError,
    )

    def __init__(self, config: Any = None, *, key_prefix: str | None = None) -> None:
        """``config`` is any ``providerConfig`` form; ``key_prefix`` overrides the
        configured one."""
        self._prefix_override = key_prefix
        self._configured = config is not None
        self._set_options(parse_memcached_config(config))

    def _set_options(self, options: MemcachedOptions) -> None:
        if self._prefix_override is not None:
            options = replace(options, key_prefix=_key_prefix(self._prefix_override))
        self.options = options
        self.key_prefix = options.key_prefix
        self._prefix = options.key_prefix.encode()
        names = [f"{host}:{port}" for host, port in options.servers]
        self._index = {name: i for i, name in enumerate(names)}
        self._ring = RendezvousHash(names) if len(names) > 1 else None
        self._sync = _SyncClients(options)
        self._async = _AsyncClients(options)
        self._tokens = _Tokens()

    def configure(self, config: Any) -> None:
        """Apply the manager's ``providerConfig``; an empty one keeps what the constructor
        was given."""
        empty = config is None or (isinstance(config, str) and not config.strip())
        if empty and self._configured:
            return
        options = parse_memcached_config(config)
        self.close()
        self._configured = True
        self._set_options(options)

    def _where(self, sid: str) -> tuple[int, bytes]:
        key = self._prefix + sid.encode()
        if self._ring is None:
            return 0, key
        return self._index[self._ring.get_node(key.decode())], key

    # -- the primitives: each plan, run by either mode ------------------------------------

    def read(self, sid: str) -> Record | None:
        """``gets``: the live record, or ``None``."""
        return drive(_read(*self._where(sid), self._tokens), self._sync.send)

    def aread(self, sid: str) -> Coroutine[Any, Any, Record | None]:
        """Async twin of :meth:`read`."""
        return adrive(_read(*self._where(sid), self._tokens), self._async.send)

    def create(self, sid: str, record: Record) -> bool:
        """``add``: store only if no live record has this ID."""
        return drive(_create(*self._where(sid), record), self._sync.send)

    def acreate(self, sid: str, record: Record) -> Coroutine[Any, Any, bool]:
        """Async twin of :meth:`create`."""
        return adrive(_create(*self._where(sid), record), self._async.send)

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        """``cas`` with the token this request's read got, else ``gets`` then ``cas``:
        only over a live record at that version."""
        return drive(_update(*self._where(sid), record, expected_version, self._tokens),
                     self._sync.send)

    def aupdate(self, sid: str, record: Record,
                expected_version: int) -> Coroutine[Any, Any, bool]:
        """Async twin of :meth:`update`."""
        return adrive(_update(*self._where(sid), record, expected_version, self._tokens),
                      self._async.send)

    def touch(self, sid: str, expires_at: float) -> bool:
        """``gets`` then ``cas``: the stored deadline and the expiry, together."""
        return drive(_touch(*self._where(sid), expires_at), self._sync.send)

    def atouch(self, sid: str, expires_at: float) -> Coroutine[Any, Any, bool]:
        """Async twin of :meth:`touch`."""
        return adrive(_touch(*self._where(sid), expires_at), self._async.send)

    def delete(self, sid: str) -> None:
        """``delete``."""
        drive(_delete(*self._where(sid)), self._sync.send)

    def adelete(self, sid: str) -> Coroutine[Any, Any, None]:
        """Async twin of :meth:`delete`."""
        return adrive(_delete(*self._where(sid)), self._async.send)

    def count(self) -> int:
        """Live sessions, by listing every server's items (``lru_crawler metadump``) and
        reading this provider's: O(items on the servers). See the module's docstring."""
        total = 0
        for server in range(len(self.options.servers)):
            client = self._sync.client(server)
            keys = self._dump_keys(server)
            for start in range(0, len(keys), _COUNT_BATCH):
                values = client.get_many(keys[start:start + _COUNT_BATCH])
                total += sum(_record(value) is not None for value in values.values())
        return total

    def _dump_keys(self, server: int) -> list[bytes]:
        """This provider's keys on one server, from ``lru_crawler metadump`` (its own
        connection: the dump ends with a line pymemcache's readers do not know)."""
        address = self.options.servers[server]
        # "hash" walks the hash table (memcached 1.6.10+): every item once. "all" walks
        # the LRUs, and an item moved between them during the walk can be missed.
        what = b"hash"
        for _ in range(50):
            lines = _metadump(address, self.options.connect_timeout, self.options.timeout,
                              what)
            last = lines[-1] if lines else b""
            if last.startswith((b"ERROR", b"CLIENT_ERROR")) and what == b"hash":
                what = b"all"  # an older server
                continue
            if not last.startswith(b"BUSY"):
                break
            time.sleep(0.1)  # another crawl is running
        else:
            raise StoreUnavailableError(
                f"memcached {address} kept its LRU crawler busy: count() cannot list its items")
        if last not in (b"END", b"DONE"):
            raise StoreUnavailableError(
                f"memcached {address} cannot list its items for count() "
                f"(lru_crawler metadump answered {last.decode(errors='replace')!r}; it needs "
                "memcached 1.4.31 or later with the LRU crawler on)")
        keys: dict[bytes, None] = {}  # in order, once each
        for line in lines:
            if line.startswith(b"key="):
                key = unquote_to_bytes(line[4:].split(b" ", 1)[0])
                if key.startswith(self._prefix):
                    keys[key] = None
        return list(keys)

    def acount(self) -> Coroutine[Any, Any, int]:
        """Async twin of :meth:`count`, in a worker thread (aiomcache cannot list items)."""
        return asyncio.to_thread(self.count)

    def gc(self) -> int:
        """Nothing to do: memcached expires sessions by their expiry time."""
        return 0

    async def agc(self) -> int:
        """Async twin of :meth:`gc`."""
        return 0

    def close(self) -> None:
        """Close the sync connections; async ones are closed by :meth:`aclose`, in their
        event loop."""
        self._sync.close()

    async def aclose(self) -> None:
        """Close this event loop's async clients, and the sync ones."""
        await self._async.aclose()
        self._sync.close()
