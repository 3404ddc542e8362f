"""Codecs turn a session's data into bytes for a store and back.

The default, :class:`JSONCodec`, keeps exact round trips for the Python types sessions
commonly hold (datetime, date, time — naive, fixed-offset or ``zoneinfo.ZoneInfo`` —,
bytes, bytearray, tuple, set, frozenset, OrderedDict, UUID, Decimal) by tagging them. A
value it cannot bring back with its exact type (an ``IntEnum``, a ``str`` subclass, a
namedtuple, a datetime with a pytz zone...) is refused with a
:class:`~websession.SerializationError` naming the type and where it is in the session,
rather than silently changed. Decoding never raises anything but :class:`DecodeError`.
:class:`SignedPickleCodec` exists for applications that explicitly choose pickle; it
refuses to unpickle anything without a valid HMAC.
"""

from __future__ import annotations

import base64
import datetime as _dt
import enum
import hashlib
import hmac
import json
import pickle
import re
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from .exceptions import ConfigurationError, SerializationError

__all__ = ["Codec", "DecodeError", "JSONCodec", "SignedPickleCodec"]


class DecodeError(ValueError):
    """Stored bytes could not be decoded; the session is treated as absent."""


@runtime_checkable
class Codec(Protocol):
    """Turns a JSON-like mapping into bytes and back."""

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Return ``value`` as bytes; raise :class:`SerializationError` if it cannot."""
        ...

    def decode(self, data: bytes) -> dict[str, Any]:
        """Return the mapping ``data`` holds; raise :class:`DecodeError` if it is damaged."""
        ...


# A tagged value is a one-key object whose key starts with a space, as in Flask's tagged
# JSON: short, and a user's own one-key dict with such a key is escaped with " dict".
_TAG = " "
# Exact types JSON stores as they are. Subclasses (IntEnum, str enums) are not here: they
# would come back as their base type, so they are refused.
_PLAIN = frozenset({str, int, float, bool, type(None)})
# What a ZoneInfo key looks like ("Europe/Paris", "Etc/GMT+5"): checked before a stored
# key reaches ZoneInfo, which would otherwise look any name up on disk.
_ZONE_KEY = re.compile(r"[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*")
# Base types a refused subclass is named against, most specific first.
_BASES = (bool, int, float, str, bytes, bytearray, OrderedDict, dict, list, tuple, frozenset,
          set, _dt.datetime, _dt.date, _dt.time, uuid.UUID, Decimal)


class _Unstorable(Exception):
    """A value the JSON codec refuses; ``path`` records where it sits, innermost first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []

    def message(self) -> str:
        where = "".join(reversed(self.path))
        return f"session{where}: {self.reason}" if where else self.reason


def _type_name(kind: type) -> str:
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def _unsupported(value: Any) -> _Unstorable:
    kind = type(value)
    base = next((b for b in _BASES if isinstance(value, b)), None)
    if base is None:
        return _Unstorable(
            f"cannot store a value of type {_type_name(kind)} in a JSON session; convert "
            "it, or configure another codec"
        )
    convert = "its .value" if isinstance(value, enum.Enum) else f"{_type_name(base)}(value)"
    return _Unstorable(
        f"cannot store a value of type {_type_name(kind)} in a JSON session: it would come "
        f"back as a plain {_type_name(base)}; store {convert}, or configure another codec"
    )


def _tag_dict(value: Mapping[Any, Any]) -> Mapping[str, Any]:
    for key, item in value.items():
        if type(key) is not str or type(item) not in _PLAIN:
            break
    else:  # every value plain (most sessions): the mapping is its own JSON form, uncopied
        if len(value) == 1 and key.startswith(_TAG):
            return {" dict": [[key, item]]}  # escaped, as below
        return value if type(value) is dict else dict(value)
    out = {}
    for key, item in value.items():
        if type(key) is not str:
            raise _Unstorable(f"dict keys must be str, got {_type_name(type(key))} {key!r}")
        if type(item) in _PLAIN:
            out[key] = item
        else:
            try:
                out[key] = _tag(item)
            except _Unstorable as exc:
                exc.path.append(f"[{key!r}]")
                raise
    # With one entry, the loop's last key is the only one.
    if len(out) == 1 and key.startswith(_TAG):
        # Escaped as pairs: an inner object would be untagged before this one is.
        return {" dict": [[key, item] for key, item in out.items()]}
    return out


def _tag_ordered(value: OrderedDict[Any, Any]) -> dict[str, Any]:
    tagged = _tag_dict(value)
    escaped = len(value) == 1 and next(iter(value)).startswith(_TAG)
    pairs = tagged[" dict"] if escaped else [[key, item] for key, item in tagged.items()]
    return {" odict": pairs}


def _tag_list(value: Iterable[Any]) -> list[Any]:
    try:
        return [item if type(item) in _PLAIN else _tag(item) for item in value]
    except _Unstorable as exc:
        for index, item in enumerate(value):  # only on failure: find which item it was
            try:
                _tag(item)
            except _Unstorable:
                exc.path.append(f"[{index}]")
                break
        raise


def _zone_key(value: _dt.datetime | _dt.time) -> str | None:
    """``None`` when ``isoformat()`` brings ``value``'s zone back (none, or a plain fixed
    offset); the ZoneInfo key when it must be stored beside it."""
    tz = value.tzinfo
    if tz is None or tz is _dt.UTC:
        return None
    if type(tz) is ZoneInfo:
        if tz.key is not None and _ZONE_KEY.fullmatch(tz.key):
            return tz.key
        reason = f"its ZoneInfo has no usable key ({tz.key!r})"
    elif type(tz) is _dt.timezone:
        offset = tz.utcoffset(None)
        if tz.tzname(None) == _dt.timezone(offset).tzname(None):
            return None  # unnamed: isoformat's "+01:00" is all there is to it
        reason = f"the timezone is named {tz.tzname(None)!r}, and only its offset is kept"
    else:
        reason = f"its tzinfo is a {_type_name(type(tz))}"
    raise _Unstorable(
        f"cannot store this {type(value).__name__} exactly: {reason}; use a "
        "zoneinfo.ZoneInfo or an unnamed datetime.timezone"
    )


def _tag_clock(tag: str, value: _dt.datetime | _dt.time) -> dict[str, Any]:
    key = _zone_key(value)
    if key is None:
        if not value.fold:
            return {tag: value.isoformat()}
        # isoformat() drops the fold, which still decides what a naive time means locally.
        return {tag: [value.isoformat(), None, 1]}
    # The wall time, the zone and the fold: an offset would not say which zone, and the
    # wall time alone is ambiguous in the hour a clock goes back.
    return {tag: [value.replace(tzinfo=None).isoformat(), key, value.fold]}


def _b64(value: bytes | bytearray) -> str:
    return base64.b64encode(value).decode("ascii")


_TAGGERS: dict[type, Callable[[Any], Any]] = {
    dict: _tag_dict,
    list: _tag_list,
    tuple: lambda v: {" tuple": _tag_list(v)},
    _dt.datetime: lambda v: _tag_clock(" datetime", v),
    _dt.date: lambda v: {" date": v.isoformat()},
    _dt.time: lambda v: _tag_clock(" time", v),
    bytes: lambda v: {" bytes": _b64(v)},
    bytearray: lambda v: {" bytearray": _b64(v)},
    frozenset: lambda v: {" frozenset": _tag_list(v)},
    set: lambda v: {" set": _tag_list(v)},
    uuid.UUID: lambda v: {" uuid": v.hex},
    Decimal: lambda v: {" decimal": str(v)},
    OrderedDict: _tag_ordered,
}


def _tag(value: Any) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        return value
    # Exact types only: a subclass would come back as its base, so it is refused.
    tagger = _TAGGERS.get(kind)
    if tagger is None:
        raise _unsupported(value)
    return tagger(value)


# -- decoding: a damaged record can hold anything. Whatever a converter raises becomes a
# DecodeError; where a wrong shape would convert without an error (tuple("abc")), the
# converter checks the shape first.


def _listed(kind: Callable[[list[Any]], Any]) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if type(value) is not list:
            raise ValueError(f"expected a list, got {type(value).__name__}")
        return kind(value)

    return convert


def _pairs(value: Any) -> list[tuple[str, Any]]:
    if type(value) is not list:
        raise ValueError("expected a list of [key, value] pairs")
    out = []
    for pair in value:
        if type(pair) is not list or len(pair) != 2 or type(pair[0]) is not str:
            raise ValueError("expected a list of [key, value] pairs")
        out.append((pair[0], pair[1]))
    return out


def _text(value: Any) -> str:
    if type(value) is not str:
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _untag_clock(parse: Callable[[str], Any]) -> Callable[[Any], Any]:
    """The decoder of a datetime or time tag: an ISO string, or [wall time, zone, fold]."""

    def convert(value: Any) -> Any:
        if type(value) is str:
            return parse(value)
        if type(value) is not list or len(value) != 3:
            raise ValueError("expected an ISO string or [wall time, zone, fold]")
        wall, key, fold = value
        if fold not in (0, 1) or type(fold) is not int:
            raise ValueError(f"bad fold {fold!r}")
        clock = parse(wall)
        if key is None:
            return clock.replace(fold=fold)
        if type(key) is not str or not _ZONE_KEY.fullmatch(key) or clock.tzinfo is not None:
            raise ValueError("bad zone, or a zoned wall time with an offset")
        return clock.replace(tzinfo=ZoneInfo(key), fold=fold)

    return convert


_UNTAG: dict[str, Callable[[Any], Any]] = {
    " dict": lambda v: dict(_pairs(v)),
    " odict": lambda v: OrderedDict(_pairs(v)),
    " tuple": _listed(tuple),
    " datetime": _untag_clock(_dt.datetime.fromisoformat),
    " date": _dt.date.fromisoformat,
    " time": _untag_clock(_dt.time.fromisoformat),
    " bytes": lambda v: base64.b64decode(v, validate=True),
    " bytearray": lambda v: bytearray(base64.b64decode(v, validate=True)),
    " frozenset": _listed(frozenset),
    " set": _listed(set),
    " uuid": uuid.UUID,
    " decimal": lambda v: Decimal(_text(v)),
}


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        key = next(iter(obj))
        if key[:1] == _TAG:
            convert = _UNTAG.get(key)
            if convert is None:
                # The encoder escapes such a dict as " dict": this one was not written by it.
                raise ValueError(f"unknown tag {key!r}")
            return convert(obj[key])
    return obj


def _make_encoder(ascii_only: bool = False) -> Callable[[Any, int], Iterable[str]]:
    # The C encoder, built once: json.dumps would rebuild it on every call, which costs
    # as much as the encoding itself for a small session.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - Pythons without the _json accelerator
        python = json.JSONEncoder(separators=(",", ":"), ensure_ascii=ascii_only)
        return lambda value, _level: python.iterencode(value)
    strings = json.encoder.encode_basestring_ascii if ascii_only else (
        json.encoder.encode_basestring
    )
    chunks: Callable[[Any, int], Iterable[str]] = make(
        None, None, strings, None, ":", ",", False, False, True
    )
    return chunks


def _scanner(decoder: json.JSONDecoder) -> Callable[[str, int], tuple[Any, int]]:
    scan: Callable[[str, int], tuple[Any, int]] = decoder.scan_once  # type: ignore[attr-defined]
    return scan


class JSONCodec:
    """JSON with tagged types; the default codec. Never executes anything it reads.

    Every value comes back with its exact type, or :meth:`encode` refuses it; every
    damaged input makes :meth:`decode` raise :class:`DecodeError` and nothing else.
    """

    __slots__ = ("_ascii_chunks", "_chunks", "_scan", "_scan_plain")

    def __init__(self) -> None:
        self._chunks = _make_encoder()
        self._ascii_chunks = _make_encoder(ascii_only=True)
        # The decoders' scanners, called directly: JSONDecoder.decode adds two regex
        # passes for whitespace that our own output never has.
        self._scan = _scanner(json.JSONDecoder(object_hook=_untag))
        self._scan_plain = _scanner(json.JSONDecoder())

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Encode ``value`` as UTF-8 JSON."""
        try:
            tagged = _tag_dict(value)
            text = "".join(self._chunks(tagged, 0))
        except _Unstorable as exc:
            raise SerializationError(exc.message()) from None
        except RecursionError:
            raise SerializationError(
                "session data is circular, or nested too deeply to store"
            ) from None
        except ValueError as exc:  # an int too long to write out, for one
            raise SerializationError(f"session data cannot be written as JSON: {exc}") from exc
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate ("\ud800", easy to send in a JSON body) is a valid str but
            # not UTF-8; JSON's \u escapes carry it, and the decoder brings it back.
            return "".join(self._ascii_chunks(tagged, 0)).encode("ascii")

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode JSON written by :meth:`encode`; anything else raises :class:`DecodeError`."""
        try:
            text = data.decode("utf-8")
            # Every tag is an object key starting with a space; without one, skip the hook.
            scan = self._scan if '{" ' in text else self._scan_plain
            value, end = scan(text, 0)
        except StopIteration:
            raise DecodeError("not JSON") from None
        except RecursionError:
            raise DecodeError("JSON nested too deeply") from None
        except Exception as exc:  # a damaged record can make any converter fail
            raise DecodeError(f"{type(exc).__name__}: {exc}") from exc
        if end != len(text) or type(value) is not dict:
            raise DecodeError("session payload is not one JSON object")
        return value


class SignedPickleCodec:
    """Pickle, signed with HMAC-SHA256; only for applications that choose it explicitly.

    ``secret_keys`` may be one key or a list: the first signs, all verify, so keys can
    rotate. Data without a valid signature is never unpickled.
    """

    __slots__ = ("_keys",)
    _DIGEST = hashlib.sha256().digest_size

    def __init__(self, secret_keys: str | bytes | Sequence[str | bytes]) -> None:
        keys = [secret_keys] if isinstance(secret_keys, str | bytes) else list(secret_keys)
        encoded = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
        if not encoded or any(len(k) < 32 for k in encoded):
            raise ConfigurationError(
                "SignedPickleCodec: every secret key must be at least 32 bytes", key="secret_keys"
            )
        self._keys = encoded

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Pickle ``value`` and prepend its signature."""
        try:
            body = pickle.dumps(dict(value), protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(str(exc)) from exc
        except RecursionError:
            raise SerializationError("session data is nested too deeply to pickle") from None
        return hmac.digest(self._keys[0], body, "sha256") + body

    def decode(self, data: bytes) -> dict[str, Any]:
        """Verify the signature with every key, then unpickle."""
        mac, body = data[: self._DIGEST], data[self._DIGEST :]
        if not any(hmac.compare_digest(mac, hmac.digest(k, body, "sha256")) for k in self._keys):
            raise DecodeError("bad signature")
        try:
            value = pickle.loads(body)
        except Exception as exc:  # signed by us, yet unreadable: a class since removed
            raise DecodeError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(value, dict):
            raise DecodeError("session payload is not a dict")
        return value
