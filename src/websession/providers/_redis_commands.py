"""The Redis providers' value format and the commands each primitive sends, as plans
(:mod:`websession._plans`) run by either mode's client (:mod:`._redis_clients`).

A value is ``span:version:deadline:payload`` (see :mod:`.redis`); a read is ``GET`` (the
read script instead when the idle refresh is due), the compare-and-set and the touch are
Lua scripts sent by ``EVALSHA`` (``EVAL`` on a server that does not know them yet); create
is ``SET NX PX``, delete ``DEL``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

from .._plans import Plan
from ._redis_cache import Commands
from ._redis_clients import NO_OPTIONS, UNKNOWN_SCRIPT
from .base import Record, dump_versioned, load_versioned

T = TypeVar("T")

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
# touch moved it) is never shortened. The deadline moves by what the TTL gained, and the
# value comes back wrapped in a one-item array to say so (the common reply is unchanged).
# A script costs the server several times a GET (Redis 7.0: ~13 µs a call in INFO
# commandstats against ~1.3 µs; 28k instructions against 6k, most of it Lua's set-up per
# call), so a read sends it only when the stored deadline says the refresh is due (see
# _refresh_due); the script then decides with the key's real TTL.
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
    return {{value}}
  end
end
return value
"""

# Compare-and-set: write only over a live record whose version field is ARGV[1]
# ("<version>:"). GETRANGE reads just that field, however large the session; the
# client sends where it ends (ARGV[4]) and the start is a string, because a Lua number
# passed to redis.call is formatted with sprintf("%.17g"): 43k instructions a call on
# Redis 7.0 with the offsets computed in Lua, 39k without (a GET is 6k; the Lua set-up
# alone, 21k). See update_args.
_UPDATE_LUA = f"""
if redis.call('GETRANGE', KEYS[1], '{_HEADER}', ARGV[4]) ~= ARGV[1] then
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


READ = _script(_READ_LUA)
UPDATE = _script(_UPDATE_LUA)
_TOUCH = _script(_TOUCH_LUA)

# -- records <-> Redis values -------------------------------------------------------------


def ttl_ms(expires_at: float) -> int:
    # A deadline already past still gets a (1 ms) TTL: the stored deadline says it is
    # gone, and one command stays one command.
    return min(max(1, int((expires_at - time.time()) * 1000)), _MAX_SPAN)


def value_of(record: Record, ttl: int) -> bytes:
    return b"%0*d:" % (_SPAN_WIDTH, ttl) + dump_versioned(record)


def record_of(reply: Any) -> Record | None:
    """A read's reply as a live record; ``None`` if absent, expired or foreign."""
    refreshed = reply.__class__ is list  # the read script moved the deadline
    value = reply[0] if refreshed else reply
    if value is None or value[_SPAN_WIDTH:_HEADER] != b":":
        return None
    # Past its deadline counts as absent: Redis may hold it for the last ms of its TTL.
    return load_versioned(value[_HEADER:], refreshed)


# -- the primitives, as plans -------------------------------------------------------------
#
# A step is (command, options): execute_command's arguments and keyword options (a
# cluster's target node); RedisClients.send and .asend run it (see _redis_clients).


def _script_plan(script: _Script, key: str, args: tuple[Any, ...],
                 parse: Callable[[Any], T]) -> Plan[T]:
    """Run ``script`` on ``key``; return its reply as ``parse`` reads it."""
    reply = yield ("EVALSHA", script.sha, 1, key, *args), NO_OPTIONS
    if reply is UNKNOWN_SCRIPT:  # first use on this server (or after a restart)
        reply = yield ("EVAL", script.source, 1, key, *args), NO_OPTIONS
    return parse(reply)


def refresh_at(expires_at: float, span: int) -> float:
    """When (Unix time) a read of a record whose deadline is ``expires_at`` and idle span
    ``span`` ms must move the deadline: once a tenth of the span has passed (the read
    script's rule, and the engine's)."""
    return expires_at - (span - span // 10) / 1000


def _refresh_due(value: bytes) -> bool:
    """Whether a read of ``value`` should move its deadline (:func:`refresh_at`, with the
    stored deadline standing in for the TTL: every write and touch sets both from it;
    between hosts, off by their clocks' skew, which the engine's expiry already trusts)."""
    if value[_SPAN_WIDTH:_HEADER] != b":":
        return False  # foreign: the script would return it as it is
    v_end = value.find(b":", _HEADER)
    d_end = value.find(b":", v_end + 1) if v_end > 0 else -1
    if d_end < 0:
        return False
    try:
        return time.time() >= refresh_at(float(value[v_end + 1:d_end]),
                                         int(value[:_SPAN_WIDTH]))
    except ValueError:
        return False


def _read_reply(key: str, due: bool = False) -> Plan[Any]:
    """``GET``; the read script instead when the refresh is due (a second round trip,
    once per tenth of the idle span). ``due``: the caller knows it is (the client-side
    cache's copy says so): the script alone."""
    if due:
        return (yield from _script_plan(READ, key, (), _same))
    value = yield ("GET", key), NO_OPTIONS
    if value is not None and _refresh_due(value):
        return (yield from _script_plan(READ, key, (), _same))
    return value


def _read(key: str) -> Plan[Record | None]:
    return record_of((yield from _read_reply(key)))


def _same(reply: Any) -> Any:
    return reply


def _reply_span(reply: Any) -> int:
    """The idle span (ms) in a read's reply of a live record."""
    value = reply[0] if reply.__class__ is list else reply
    return int(value[:_SPAN_WIDTH])


def _create(key: str, record: Record, ttl: int = 0) -> Plan[bool]:
    ttl = ttl or ttl_ms(record.expires_at)
    return bool((yield ("SET", key, value_of(record, ttl), "NX", "PX", ttl), NO_OPTIONS))


def update_args(expected_version: int, value: bytes, ttl: int) -> tuple[Any, ...]:
    """The compare-and-set script's ARGV: store ``value`` for ``ttl`` ms over the record
    at ``expected_version``."""
    expected = b"%d:" % expected_version
    return expected, value, ttl, _HEADER - 1 + len(expected)


def _update(key: str, record: Record, expected_version: int, ttl: int = 0) -> Plan[bool]:
    ttl = ttl or ttl_ms(record.expires_at)
    args = update_args(expected_version, value_of(record, ttl), ttl)
    return _script_plan(UPDATE, key, args, bool)  # the script answers 1 or 0


def _touch(key: str, expires_at: float) -> Plan[bool]:
    return _script_plan(_TOUCH, key, (repr(expires_at), ttl_ms(expires_at)), bool)


def _delete(key: str) -> Plan[None]:
    yield ("DEL", key), NO_OPTIONS


class _Plain(NamedTuple):
    """The primitives' plans without a cache."""

    read: Callable[[str], Plan[Record | None]]
    create: Callable[..., Plan[bool]]
    update: Callable[..., Plan[bool]]
    touch: Callable[[str, float], Plan[bool]]
    delete: Callable[[str], Plan[None]]


PLAIN = _Plain(_read, _create, _update, _touch, _delete)
#: The same commands and value format, for the client-side cache to wrap.
COMMANDS = Commands(_read_reply, record_of, _reply_span, refresh_at, ttl_ms, _create, _update,
                     _touch, _delete)


def scan_command(pattern: str, cursor: int) -> tuple[Any, ...]:
    return "SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT


def scan_plan(pattern: str, cursor: int = 0, options: Mapping[str, Any] = NO_OPTIONS) -> Plan[int]:
    """Count the keys matching ``pattern``, SCANning one server from ``cursor`` on."""
    total = 0
    while True:
        cursor, keys = yield scan_command(pattern, cursor), options
        if isinstance(cursor, dict):  # a cluster's cursor is {node name: cursor}
            (cursor,) = cursor.values()
        total += len(keys)
        if not int(cursor):
            return total


def match_pattern(prefix: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
