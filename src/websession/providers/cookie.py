"""The cookie provider: the whole session lives in the client, sealed with AES-GCM.

``Manager("cookie", {"ProviderConfig": {"cookieName": "gosessionid", "securityKey": "..."}})``
— ``ProviderConfig`` takes the seed's nested JSON (a JSON string, as in the seed, or an
object): ``cookieName``, ``securityKey``, ``blockKey``, ``securityName``, ``secure``,
``maxage``.

Nobody can read or forge a sealed cookie: each value is AES-256-GCM with a fresh 96-bit
nonce, under a key derived with HKDF-SHA256 from ``securityKey`` (and ``blockKey``, if
given); the cookie's ``securityName`` is authenticated with it, so a value sealed for one
cookie cannot be replayed as another. The deadline and version are inside the sealed
bytes and checked on every read. ``securityKey`` may be a list to rotate keys: the first
seals, every one opens.

What a cookie session cannot do: it cannot be revoked. ``destroy()`` expires the cookie,
but a copy of an old value stays valid until its deadline; the same holds for the value
before a ``regenerate_id()``. Concurrent requests each send back a whole new cookie and
the browser keeps the last one, so changes made by concurrent requests are not merged.
Nothing can be counted or collected on the server (``get_active_session()`` is 0). And a
browser keeps at most 4093 bytes per cookie: a bigger session raises
:class:`~websession.SessionTooLarge`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import struct
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..cookies import MAX_COOKIE_AGE
from ..exceptions import ConfigurationError, MissingDependencyError
from .base import ClientSideProvider, Record, parse_options

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingDependencyError("cookie", "cookie", "cryptography") from exc

if TYPE_CHECKING:
    from .._config import ManagerConfig

__all__ = ["MIN_KEY_BYTES", "CookieProvider"]

#: The shortest securityKey accepted. beego accepted an empty key and then used random
#: per-process keys, so every restart logged everybody out; an empty or short key is a
#: configuration error here.
MIN_KEY_BYTES = 16
_FORMAT = b"\x01"  # first byte of every sealed value: the format, for future changes
_NONCE = 12
_TAG = 16
_HEADER = struct.Struct(">dQ")  # expires_at, version
_MIN_TOKEN = len(base64.urlsafe_b64encode(bytes(1 + _NONCE + _HEADER.size + _TAG)).rstrip(b"="))
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_OPTIONS: dict[str, type | tuple[type, ...]] = {
    "cookie_name": str,
    "security_key": (str, list),
    "block_key": str,
    "security_name": str,
    "secure": bool,
    "maxage": int,
}


def _derive(secret: bytes, block_key: bytes) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"websession cookie provider",
        info=b"AES-256-GCM\x00" + block_key,
    ).derive(secret)
    return AESGCM(key)


class CookieProvider(ClientSideProvider):
    """Sessions sealed into the cookie with AES-256-GCM; see the module docstring."""

    def __init__(
        self,
        security_key: str | bytes | Sequence[str | bytes] | None = None,
        *,
        block_key: str | bytes = b"",
        security_name: str = "",
        cookie_name: str = "",
        secure: bool = False,
        maxage: int = 0,
    ) -> None:
        self._ciphers: list[AESGCM] = []
        self._aad = b""
        self.cookie_name = cookie_name
        self.secure = secure
        self.maxage = maxage
        if security_key is not None:
            self._set_keys(security_key, block_key, security_name)

    def _set_keys(
        self, security_key: str | bytes | Sequence[str | bytes], block_key: str | bytes,
        security_name: str,
    ) -> None:
        keys = [security_key] if isinstance(security_key, str | bytes) else list(security_key)
        raw = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
        if not raw:
            raise ConfigurationError("securityKey: give at least one key", key="securityKey")
        for key in raw:
            if len(key) < MIN_KEY_BYTES:
                raise ConfigurationError(
                    f"securityKey: a key of {len(key)} bytes is too short; use at least "
                    f"{MIN_KEY_BYTES} (for example secrets.token_urlsafe(32))",
                    key="securityKey",
                )
        block = block_key.encode() if isinstance(block_key, str) else bytes(block_key)
        self._ciphers = [_derive(key, block) for key in raw]
        self._aad = security_name.encode()

    def configure(self, config: Any) -> None:
        """Read the seed's nested JSON (a string, as in the seed, or an object)."""
        options = parse_options(config, _OPTIONS, provider="cookie")
        if "security_key" in options:
            self._set_keys(options["security_key"], options.get("block_key", b""),
                           options.get("security_name", ""))
        if not self._ciphers:
            raise ConfigurationError(
                "providerConfig for 'cookie': securityKey is required (at least "
                f"{MIN_KEY_BYTES} bytes); sessions sealed with a random key would die at "
                "every restart",
                key="securityKey",
            )
        self.cookie_name = options.get("cookie_name", self.cookie_name)
        self.secure = options.get("secure", self.secure)
        self.maxage = options.get("maxage", self.maxage)
        if not 0 <= self.maxage <= MAX_COOKIE_AGE:
            raise ConfigurationError(
                f"providerConfig for 'cookie': maxage must be from 0 to {MAX_COOKIE_AGE} "
                "seconds (400 days, the most browsers keep a cookie)",
                key="maxage",
            )

    def adjust_config(self, config: ManagerConfig) -> ManagerConfig:
        """The provider's cookieName, secure and maxage decide the cookie, as in the seed."""
        import dataclasses

        changes: dict[str, Any] = {}
        if self.cookie_name:
            changes["cookie_name"] = self.cookie_name
        if self.secure:
            changes["secure"] = True
        if self.maxage:
            changes["cookie_life_time"] = self.maxage
        return dataclasses.replace(config, **changes) if changes else config

    def seal(self, record: Record) -> str:
        """Encrypt and authenticate ``record`` with the first key."""
        nonce = os.urandom(_NONCE)
        plain = _HEADER.pack(record.expires_at, record.version) + record.payload
        sealed = _FORMAT + nonce + self._ciphers[0].encrypt(nonce, plain, self._aad)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def valid_token(self, token: str) -> bool:
        """A base64url value at least as long as an empty sealed record."""
        return _MIN_TOKEN <= len(token) <= 8192 and _TOKEN.fullmatch(token) is not None

    def unseal(self, token: str) -> Record | None:
        """Open a sealed value with any key; ``None`` if forged, damaged or expired."""
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        # One value, one spelling: unused trailing bits must be zero, or two cookie
        # strings would open to the same session.
        if sealed[:1] != _FORMAT or base64.urlsafe_b64encode(sealed).rstrip(b"=") != token.encode():
            return None
        nonce, body = sealed[1 : 1 + _NONCE], sealed[1 + _NONCE :]
        for cipher in self._ciphers:
            try:
                plain = cipher.decrypt(nonce, body, self._aad)
            except (InvalidTag, ValueError):
                continue
            expires_at, version = _HEADER.unpack_from(plain)
            if expires_at <= time.time():
                return None
            return Record(plain[_HEADER.size :], expires_at, version)
        return None
