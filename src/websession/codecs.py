"""Codecs turn a session's data into bytes for a store and back.

The default, :class:`JSONCodec`, keeps exact round trips for the Python types sessions
commonly hold (datetime, date, time, bytes, tuple, set, frozenset, UUID, Decimal) by
tagging them. :class:`SignedPickleCodec` exists for applications that explicitly choose
pickle; it refuses to unpickle anything without a valid HMAC.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import pickle
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

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
# Exact types JSON stores as they are (subclasses such as IntEnum take the slow path).
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _tag_dict(value: Mapping[Any, Any]) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        if type(key) is not str:
            raise SerializationError(
                f"session dict keys must be str, got {type(key).__name__} {key!r}"
            )
        out[key] = item if type(item) in _PLAIN else _tag(item)
    if len(out) == 1 and next(iter(out)).startswith(_TAG):
        # Escaped as pairs: an inner object would be untagged before this one is.
        return {" dict": [[key, item] for key, item in out.items()]}
    return out


def _tag(value: Any) -> Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dict):
        return _tag_dict(value)
    if isinstance(value, str | int | float):  # subclasses: str enums, IntEnum, bool...
        return value
    if isinstance(value, list):
        return [item if type(item) in _PLAIN else _tag(item) for item in value]
    if isinstance(value, tuple):
        return {" tuple": [_tag(item) for item in value]}
    if isinstance(value, _dt.datetime):
        return {" datetime": value.isoformat()}
    if isinstance(value, _dt.date):
        return {" date": value.isoformat()}
    if isinstance(value, _dt.time):
        return {" time": value.isoformat()}
    if isinstance(value, bytes | bytearray):
        return {" bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, frozenset):
        return {" frozenset": [_tag(item) for item in value]}
    if isinstance(value, set):
        return {" set": [_tag(item) for item in value]}
    if isinstance(value, uuid.UUID):
        return {" uuid": value.hex}
    if isinstance(value, Decimal):
        return {" decimal": str(value)}
    raise SerializationError(
        f"cannot store a value of type {type(value).__name__} in a JSON session; "
        "convert it, or configure another codec"
    )


_UNTAG: dict[str, Callable[[Any], Any]] = {
    " dict": lambda pairs: {key: item for key, item in pairs},
    " tuple": tuple,
    " datetime": _dt.datetime.fromisoformat,
    " date": _dt.date.fromisoformat,
    " time": _dt.time.fromisoformat,
    " bytes": lambda v: base64.b64decode(v, validate=True),
    " frozenset": frozenset,
    " set": set,
    " uuid": uuid.UUID,
    " decimal": Decimal,
}


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1:
        key = next(iter(obj))
        if key[:1] == _TAG:
            convert = _UNTAG.get(key)
            if convert is not None:
                return convert(obj[key])
    return obj


def _make_encoder() -> Callable[[Any, int], Iterable[str]]:
    # The C encoder, built once: json.dumps would rebuild it on every call, which costs
    # as much as the encoding itself for a small session.
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - Pythons without the _json accelerator
        python = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
        return lambda value, _level: python.iterencode(value)
    chunks: Callable[[Any, int], Iterable[str]] = make(
        None, None, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    return chunks


def _scanner(decoder: json.JSONDecoder) -> Callable[[str, int], tuple[Any, int]]:
    scan: Callable[[str, int], tuple[Any, int]] = decoder.scan_once  # type: ignore[attr-defined]
    return scan


class JSONCodec:
    """JSON with tagged types; the default codec. Never executes anything it reads."""

    __slots__ = ("_chunks", "_scan", "_scan_plain")

    def __init__(self) -> None:
        self._chunks = _make_encoder()
        # The decoders' scanners, called directly: JSONDecoder.decode adds two regex
        # passes for whitespace that our own output never has.
        self._scan = _scanner(json.JSONDecoder(object_hook=_untag))
        self._scan_plain = _scanner(json.JSONDecoder())

    def encode(self, value: Mapping[str, Any]) -> bytes:
        """Encode ``value`` as UTF-8 JSON."""
        try:
            return "".join(self._chunks(_tag_dict(value), 0)).encode("utf-8")
        except (ValueError, RecursionError) as exc:
            raise SerializationError(f"session data is circular or too deep: {exc}") from exc

    def decode(self, data: bytes) -> dict[str, Any]:
        """Decode JSON written by :meth:`encode`."""
        try:
            text = data.decode("utf-8")
            # Every tag is an object key starting with a space; without one, skip the hook.
            scan = self._scan if '{" ' in text else self._scan_plain
            value, end = scan(text, 0)
        except StopIteration as exc:
            raise DecodeError("not JSON") from exc
        except (ValueError, TypeError) as exc:
            raise DecodeError(str(exc)) from exc
        if end != len(text) or not isinstance(value, dict):
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
        return hmac.digest(self._keys[0], body, "sha256") + body

    def decode(self, data: bytes) -> dict[str, Any]:
        """Verify the signature with every key, then unpickle."""
        mac, body = data[: self._DIGEST], data[self._DIGEST :]
        if not any(hmac.compare_digest(mac, hmac.digest(k, body, "sha256")) for k in self._keys):
            raise DecodeError("bad signature")
        value = pickle.loads(body)
        if not isinstance(value, dict):
            raise DecodeError("session payload is not a dict")
        return value
