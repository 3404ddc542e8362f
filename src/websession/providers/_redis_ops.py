"""The Redis providers' operations: listing sessions, the per-user index, batch creation,
and ``expired`` events from keyspace notifications (the optional abilities of
:class:`~websession.providers.BaseProvider`), for one server, a cluster and Sentinel.

**Listing** walks the keyspace with ``SCAN MATCH prefix*`` (every master of a cluster, one
after the other) and fetches a page's values in one ``MGET`` (one ``GET`` per key on a
cluster, whose keys sit in different slots). The cursor names the node, its ``SCAN``
cursor and the last key returned from that ``SCAN`` step, so a page never holds more than
the batch asked for, and a walk resumes from any cursor. ``SCAN`` returns every key that
exists for the whole walk; it may return one twice only if the keyspace shrinks meanwhile
(a Redis rehash), which a walk here does not filter out.

**The user index** lives outside the sessions' ``prefix*`` pattern, so counting and
listing never see it: ``websession-users:<prefix>u:<user>`` is a sorted set of the user's
session IDs scored by when each was bound (oldest first), and
``websession-users:<prefix>s:<sid>`` names the user a session is bound to, so that
rebinding or unbinding finds the set to leave. Redis expires sessions by themselves, so
the index is kept consistent with expiry lazily: a member whose session key is gone is
dropped when the user's sessions are next listed or revoked, or when a login finds the
set full (at the cap, or at :data:`PRUNE_AT` members without one); a session ID is never
reused, so a member found dead stays dead. Both index keys get a TTL of the manager's
absolute lifetime (or the session's remaining idle time, if longer) at each binding: no
session bound before can outlive it, so the index never expires before its sessions,
and a user who never comes back leaves nothing behind for longer than that.

The cap (``maxSessionsPerUser``) is kept by one Lua script on the user's set — add this
session, cut the oldest beyond the cap, return them — so concurrent logins of one user
each evict exactly the surplus; the evicted sessions' keys are then deleted. Everything
else is a few commands, each a plan step, so one plan serves both modes and every
topology: a script over several keys (which a cluster refuses unless they share a slot)
is sent only to one server or a Sentinel-managed master, and a cluster gets one command
per key instead.

**Expired events**: when someone subscribes to ``expired``, a thread of the provider's
own subscribes to ``__keyevent@<db>__:expired`` (on every master of a cluster) and
reports the session keys Redis expired. The server must have notifications on
(``notify-keyspace-events`` containing ``E`` and ``x``, e.g. ``Ex``); a warning is logged
when it says they are off. Redis fires the event when it actually removes the key (on
access, or in its background expiry cycle), so it may come some time after the deadline.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, NamedTuple, ParamSpec, TypeVar

from .._plans import Plan, adrive, drive
from ..exceptions import SessionModeError
from ._redis_clients import NO_OPTIONS, UNAVAILABLE_ERRORS, UNKNOWN_SCRIPT, ClusterClients
from ._redis_commands import record_of, ttl_ms, value_of
from .base import BaseProvider, Page, Record

if TYPE_CHECKING:
    from .._config import ManagerConfig
    from ._redis_clients import RedisClients

__all__ = ["INDEX_PREFIX", "RedisOps"]

log = logging.getLogger("websession")

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound="RedisOps")

#: Where the user index lives: before the sessions' prefix, so never under it.
INDEX_PREFIX = "websession-users:"
#: Keys asked of each SCAN step while listing (at least the batch), and the most steps
#: one page takes (a sparse keyspace then gives short pages rather than slow ones).
SCAN_STEP = 1000
SCAN_STEPS = 64
#: The most expired IDs reported in one event.
EXPIRED_BATCH = 1000
#: Without a cap, a user's set is pruned of dead members at a login once it holds this
#: many: a user who logs in often, and whose sessions are never listed, keeps a small set.
PRUNE_AT = 32
#: The index's TTL when no manager said its absolute lifetime: the default one (a day).
DEFAULT_INDEX_SPAN_MS = 86_400_000


class _Script(NamedTuple):
    source: str
    sha: str


def _script(source: str) -> _Script:
    return _Script(source, hashlib.sha1(source.encode()).hexdigest())


# Which of KEYS exist (1 or 0 each); and delete each, saying which existed.
_EACH_EXISTS = _script("""
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('EXISTS', key) end
return out
""")
_EACH_DEL = _script("""
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('DEL', key) end
return out
""")

# A session's owner key: set it to ARGV[1] for ARGV[2] ms (no ARGV: delete it); return
# what it held, so the caller knows which user's set the session leaves.
_SWAP_OWNER = _script("""
local old = redis.call('GET', KEYS[1])
if ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
else
  redis.call('DEL', KEYS[1])
end
return old
""")

# A score after every other in a user's set: bindings in the same microsecond (or on
# servers with skewed clocks) keep the order Redis saw them in.
_LATER = """
local function later(key, now)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]
  now = tonumber(now)
  if last and tonumber(last) >= now then return tonumber(last) + 1 end
  return now
end
"""

# The cap, atomically on one user's set: add ARGV[1] (bound at ARGV[2], kept if already
# there), keep the set at least ARGV[3] ms, and cut the oldest beyond ARGV[4] (0: no cap),
# returning them.
_CAP = _script(f"""
{_LATER}
redis.call('ZADD', KEYS[1], 'NX', later(KEYS[1], ARGV[2]), ARGV[1])
local span = tonumber(ARGV[3])
if redis.call('PTTL', KEYS[1]) < span then redis.call('PEXPIRE', KEYS[1], span) end
local cap = tonumber(ARGV[4])
local n = redis.call('ZCARD', KEYS[1])
if cap <= 0 or n <= cap then return {{}} end
local doomed = redis.call('ZRANGE', KEYS[1], 0, n - cap - 1)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, n - cap - 1)
return doomed
""")

# Many creates at once: SET NX PX for each of KEYS (ARGV: value, ttl for each); return how
# many were stored.
_CREATE_MANY = _script("""
local created = 0
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[2 * i - 1], 'NX', 'PX', ARGV[2 * i]) then
    created = created + 1
  end
end
return created
""")

# Many bindings at once (no cap): KEYS are owner key and user set for each; ARGV the span
# (ms), the score, then user and sid for each. A session already bound (to this user, or
# to another: an ID the target had) is left as it is.
_BIND_MANY = _script(f"""
{_LATER}
local span, score = ARGV[1], ARGV[2]
for i = 1, #KEYS, 2 do
  local user, sid = ARGV[i + 2], ARGV[i + 3]
  if not redis.call('GET', KEYS[i]) then
    redis.call('SET', KEYS[i], user, 'PX', span)
    redis.call('ZADD', KEYS[i + 1], 'NX', later(KEYS[i + 1], score), sid)
    if redis.call('PTTL', KEYS[i + 1]) < tonumber(span) then
      redis.call('PEXPIRE', KEYS[i + 1], span)
    end
  end
end
return 0
""")


def _eval(script: _Script, keys: Sequence[str], args: Sequence[Any] = ()) -> Plan[Any]:
    """Run ``script`` over ``keys`` (by its SHA; its source the first time a server sees
    it)."""
    reply = yield ("EVALSHA", script.sha, len(keys), *keys, *args), NO_OPTIONS
    if reply is UNKNOWN_SCRIPT:
        reply = yield ("EVAL", script.source, len(keys), *keys, *args), NO_OPTIONS
    return reply


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _now_us() -> int:
    return int(time.time() * 1_000_000)


#: The running mode's client: a plan that needs the client itself (a cluster's nodes) is
#: given ``RedisClients.sync`` or ``RedisClients.async_client``.
ClientOf = Callable[[], Any]


def _operation(
    plan: Callable[Concatenate[S, ClientOf, P], Plan[T]],
) -> tuple[Callable[Concatenate[S, P], T],
           Callable[Concatenate[S, P], Coroutine[Any, Any, T]]]:
    """An operation and its async twin, both running ``plan`` over the provider's clients
    (they share its docstring)."""
    name = plan.__name__.lstrip("_")

    def blocking(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        clients = self._clients
        return drive(plan(self, clients.sync, *args, **kwargs), clients.send)

    def awaitable(self: S, /, *args: P.args,
                  **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        clients = self._clients
        return adrive(plan(self, clients.async_client, *args, **kwargs), clients.asend)

    blocking.__name__ = blocking.__qualname__ = name
    blocking.__doc__ = plan.__doc__
    awaitable.__name__ = awaitable.__qualname__ = f"a{name}"
    awaitable.__doc__ = f"Async twin of :meth:`{name}`."
    return blocking, awaitable


def _cursor(node: str, scan: int | str, after: str) -> str:
    return f"{node}|{scan}|{after}"


class RedisOps(BaseProvider):
    """The optional abilities of the Redis providers (see the module documentation); the
    providers' base class mixes it in."""

    # What the provider class sets (see redis._RedisBase).
    _clients: RedisClients
    key_prefix: str
    _pattern: str
    options: Any
    #: How long the index keys live after a binding (ms): the manager's absolute lifetime.
    _index_span_ms: int = DEFAULT_INDEX_SPAN_MS

    def adjust_config(self, config: ManagerConfig) -> ManagerConfig:
        """Learn the manager's absolute lifetime: no session bound outlives it, and the
        user index lives as long."""
        self._index_span_ms = max(config.absolute_lifetime, config.idle_timeout) * 1000
        return config

    # -- keys and topology ----------------------------------------------------------------

    def _user_key(self, user: str) -> str:
        return f"{INDEX_PREFIX}{self.key_prefix}u:{user}"

    def _owner_key(self, sid: str) -> str:
        return f"{INDEX_PREFIX}{self.key_prefix}s:{sid}"

    @property
    def _spans_slots(self) -> bool:
        """Whether keys may sit on different servers (a cluster): no script over several."""
        return isinstance(self._clients, ClusterClients)

    def _primaries(self, client: ClientOf) -> Plan[list[str]]:
        """A cluster's masters by name, in a stable order."""
        nodes = client().get_primaries()
        if not nodes:  # an asyncio cluster client learns the topology on its first command
            yield ("PING",), NO_OPTIONS
            nodes = client().get_primaries()
        return sorted(node.name for node in nodes)

    # -- commands over many keys ------------------------------------------------------------

    def _fetch(self, keys: list[str]) -> Plan[list[Record | None]]:
        """The live records under ``keys`` (``None`` where absent), read without
        refreshing them."""
        if not keys:
            return []
        if self._spans_slots:
            values = []
            for key in keys:
                values.append((yield ("GET", key), NO_OPTIONS))
        else:
            values = yield ("MGET", *keys), NO_OPTIONS
        return [record_of(value) for value in values]

    def _each(self, script: _Script, command: str, keys: list[str]) -> Plan[list[bool]]:
        """``command`` (EXISTS or DEL) on each of ``keys``: which answered 1."""
        if not keys:
            return []
        if self._spans_slots:
            replies = []
            for key in keys:
                replies.append((yield (command, key), NO_OPTIONS))
        else:
            replies = yield from _eval(script, keys)
        if command == "DEL":
            self._uncache(keys)
        return [bool(reply) for reply in replies]

    def _uncache(self, keys: list[str]) -> None:
        """Sessions deleted here (a revocation, a cap's eviction): this process's
        client-side cache must not serve them until their invalidations arrive."""

    def _delete_keys(self, keys: list[str]) -> Plan[None]:
        if not keys:
            return
        if self._spans_slots:
            for key in keys:
                yield ("DEL", key), NO_OPTIONS
        else:
            yield ("DEL", *keys), NO_OPTIONS

    def _forget(self, user_key: str, sids: list[str]) -> Plan[None]:
        """Take ``sids`` out of a user's set, with their owner keys."""
        if sids:
            yield ("ZREM", user_key, *sids), NO_OPTIONS
            yield from self._delete_keys([self._owner_key(sid) for sid in sids])

    def _members(self, user_key: str) -> Plan[list[str]]:
        members = yield ("ZRANGE", user_key, 0, -1), NO_OPTIONS
        return [_text(member) for member in members]

    # -- the abilities, as plans ----------------------------------------------------------

    def _scan(self, client: ClientOf, cursor: str | None, batch: int) -> Plan[Page]:
        """Up to ``batch`` live sessions after ``cursor``: ``SCAN`` steps (over a cluster's
        masters, one after the other) until the batch is full, then one ``MGET`` (see the
        module documentation)."""
        node, scan, after = ("", "0", "") if cursor is None else cursor.split("|", 2)
        nodes: list[str] = []
        if self._spans_slots:
            nodes = yield from self._primaries(client)
            node = node or nodes[0]
        chosen: list[str] = []
        following: str | None = None
        for _ in range(SCAN_STEPS):
            options: Any = NO_OPTIONS
            if nodes:
                options = {"target_nodes": client().get_node(node_name=node)}
            reply = yield ("SCAN", scan, "MATCH", self._pattern, "COUNT",
                           max(batch, SCAN_STEP)), options
            next_scan, keys = reply
            if isinstance(next_scan, dict):  # a cluster's cursor is {node name: cursor}
                (next_scan,) = next_scan.values()
            # Sorted, so that a SCAN step repeated for its next page gives the same order.
            names = sorted(_text(key) for key in keys)
            if after:
                names = [name for name in names if name > after]
            room = batch - len(chosen)
            chosen += names[:room]
            if len(names) > room:  # the rest of this step is the next page's
                following = _cursor(node, scan, chosen[-1])
                break
            if int(next_scan):
                scan, after = str(int(next_scan)), ""
            elif node in nodes and nodes.index(node) + 1 < len(nodes):
                node, scan, after = nodes[nodes.index(node) + 1], "0", ""
            else:
                following = None  # the walk is over
                break
            following = _cursor(node, scan, after)
            if len(chosen) == batch:
                break
        records = yield from self._fetch(chosen)
        start = len(self.key_prefix)
        return Page([(name[start:], record) for name, record in zip(chosen, records, strict=True)
                     if record is not None], following)

    def _bind(self, client: ClientOf, sid: str, user: str | None,
              cap: int) -> Plan[list[str]]:
        """Index the live session under ``user`` (``None``: under nobody), leaving the set
        of the user it was bound to; past ``cap``, evict the user's oldest bindings (one
        Lua script on the user's set: see the module documentation)."""
        ttl = yield ("PTTL", self.key_prefix + sid), NO_OPTIONS
        if ttl == -2:
            return []  # not live: nothing is bound
        span = max(self._index_span_ms, ttl)
        args = () if user is None else (user, span)
        old = yield from _eval(_SWAP_OWNER, (self._owner_key(sid),), args)
        old_user = None if old is None else _text(old)
        if old_user == user:
            return []  # already bound: keeps its place
        if old_user is not None:
            yield ("ZREM", self._user_key(old_user), sid), NO_OPTIONS
        if user is None:
            return []
        user_key = self._user_key(user)
        yield from self._prune(user_key, cap if cap > 0 else PRUNE_AT)
        doomed = yield from _eval(_CAP, (user_key,), (sid, _now_us(), span, cap))
        evicted = [_text(member) for member in doomed]
        if evicted:
            yield from self._each(_EACH_DEL, "DEL", [self.key_prefix + s for s in evicted])
            yield from self._delete_keys([self._owner_key(s) for s in evicted])
        return evicted

    def _prune(self, user_key: str, full: int) -> Plan[None]:
        """Drop the members of a user's set whose sessions are gone, once it holds
        ``full`` (the cap, where dead members would count against it)."""
        sids = yield from self._members(user_key)
        if len(sids) < full:
            return
        alive = yield from self._each(_EACH_EXISTS, "EXISTS", [self.key_prefix + s for s in sids])
        yield from self._forget(user_key, [s for s, live in zip(sids, alive, strict=True)
                                           if not live])

    def _sessions_of(self, client: ClientOf, user: str) -> Plan[list[tuple[str, Record]]]:
        """The user's live sessions, oldest binding first: the set, then one ``MGET``;
        members whose sessions are gone are dropped from the set."""
        user_key = self._user_key(user)
        sids = yield from self._members(user_key)
        records = yield from self._fetch([self.key_prefix + sid for sid in sids])
        found = list(zip(sids, records, strict=True))
        yield from self._forget(user_key, [sid for sid, record in found if record is None])
        return [(sid, record) for sid, record in found if record is not None]

    def _revoke_user(self, client: ClientOf, user: str, keep: str | None) -> Plan[list[str]]:
        """Delete the user's sessions except ``keep``: one script deleting them all (one
        ``DEL`` per key on a cluster), then their index entries."""
        user_key = self._user_key(user)
        doomed = [sid for sid in (yield from self._members(user_key)) if sid != keep]
        existed = yield from self._each(_EACH_DEL, "DEL", [self.key_prefix + s for s in doomed])
        yield from self._forget(user_key, doomed)
        return [sid for sid, live in zip(doomed, existed, strict=True) if live]

    def _create_many(self, client: ClientOf,
                     records: list[tuple[str, Record, str | None]]) -> Plan[int]:
        """``SET NX PX`` for each record and its binding: two scripts for the whole batch
        on one server (one command per record, and a binding, on a cluster)."""
        created = 0
        keys: list[str] = []
        args: list[Any] = []
        span = self._index_span_ms
        for sid, record, _ in records:
            ttl = ttl_ms(record.expires_at)
            keys.append(self.key_prefix + sid)
            args += (value_of(record, ttl), ttl)
            span = max(span, ttl)
        bound = [(sid, user) for sid, _, user in records if user is not None]
        if self._spans_slots:
            for i, key in enumerate(keys):
                if (yield ("SET", key, args[2 * i], "NX", "PX", args[2 * i + 1]), NO_OPTIONS):
                    created += 1
            for sid, user in bound:
                yield from self._bind(client, sid, user, 0)
            return created
        if keys:
            created = yield from _eval(_CREATE_MANY, keys, args)
        if bound:
            index_keys: list[str] = []
            index_args: list[Any] = [span, _now_us()]
            for sid, user in bound:
                index_keys += (self._owner_key(sid), self._user_key(user))
                index_args += (user, sid)
            yield from _eval(_BIND_MANY, index_keys, index_args)
        return int(created)

    scan, ascan = _operation(_scan)
    bind, abind = _operation(_bind)
    sessions_of, asessions_of = _operation(_sessions_of)
    revoke_user, arevoke_user = _operation(_revoke_user)
    create_many, acreate_many = _operation(_create_many)

    # -- expired events -------------------------------------------------------------------

    def watch_expired(self, on_expired: Callable[[list[str]], object]) -> Callable[[], None]:
        """Report the sessions Redis expires, from keyspace notifications (see the module
        documentation): a daemon thread, subscribed before this returns (unless the server
        cannot be reached: it keeps trying); the function returned stops it."""
        stop, ready = threading.Event(), threading.Event()
        thread = threading.Thread(target=self._watch, args=(on_expired, stop, ready),
                                  name="websession-redis-expired", daemon=True)
        thread.start()
        ready.wait(10)

        def stop_watching() -> None:
            stop.set()
            thread.join(5)

        return stop_watching

    def _subscribers(self) -> list[Any]:
        """A blocking client of every server that expires session keys."""
        client = self._clients.sync()
        if self._spans_slots:
            return [node.redis_connection for node in client.get_primaries()]
        return [client]

    def _watch(self, on_expired: Callable[[list[str]], object], stop: threading.Event,
               ready: threading.Event) -> None:
        channel = f"__keyevent@{self.options.db}__:expired"
        prefix = self.key_prefix.encode()
        while not stop.is_set():
            subscriptions: list[Any] = []
            try:
                clients = self._subscribers()
                self._warn_if_off(clients[0])
                for client in clients:
                    subscription = client.pubsub(ignore_subscribe_messages=True)
                    subscriptions.append(subscription)
                    subscription.subscribe(channel)
                    # Wait for the confirmation, so that nothing expiring from now on is missed.
                    subscription.get_message(timeout=5)
                ready.set()
                wait = 0.2 / len(subscriptions)
                while not stop.is_set():
                    ids: list[str] = []
                    for subscription in subscriptions:
                        while len(ids) < EXPIRED_BATCH:
                            message = subscription.get_message(timeout=wait)
                            if message is None:
                                break
                            key = message["data"]
                            if isinstance(key, bytes) and key.startswith(prefix):
                                ids.append(key[len(prefix):].decode())
                    if ids:
                        on_expired(ids)
            except SessionModeError:
                log.warning("expired events need a blocking Redis client; %s was given only "
                            "an asyncio one", type(self).__name__)
                ready.set()
                return
            except UNAVAILABLE_ERRORS as exc:
                log.warning("Redis keyspace notifications: %s; subscribing again", exc)
                ready.set()  # the subscriber does not wait for a server that is down
                stop.wait(1.0)
            except Exception:
                log.exception("Redis keyspace notifications failed; subscribing again")
                ready.set()
                stop.wait(1.0)
            finally:
                for subscription in subscriptions:
                    with contextlib.suppress(Exception):
                        subscription.close()
        ready.set()

    def _warn_if_off(self, client: Any) -> None:
        try:
            flags = str(client.config_get("notify-keyspace-events").get(
                "notify-keyspace-events", ""))
        except Exception:  # CONFIG may be disabled (managed Redis): nothing to say
            return
        if "E" not in flags or not ("x" in flags or "A" in flags):
            log.warning("Redis has keyspace notifications off (notify-keyspace-events is %r): "
                        "no expired events will come until it includes E and x (e.g. "
                        "CONFIG SET notify-keyspace-events Ex)", flags)
