"""ManagerConfig: the seed's JSON keys (matched case-insensitively, as Go decodes them)
and their Python names, checked once so that a bad value fails at start-up, by name."""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._ids import SessionIDs
from .codecs import Codec, JSONCodec
from .cookies import (
    MAX_COOKIE_AGE,
    valid_cookie_domain,
    valid_cookie_name,
    valid_cookie_path,
)
from .exceptions import ConfigurationError

__all__ = ["MAX_LIFETIME", "ManagerConfig", "parse_config"]

# Go's http.SameSite: 0 unset, 1 DefaultMode, 2 Lax, 3 Strict, 4 None. Unset and the
# default mode both mean Lax here: the secure default.
_SAMESITE_INTS = {0: "Lax", 1: "Lax", 2: "Lax", 3: "Strict", 4: "None"}
_SAMESITE_NAMES = {"lax": "Lax", "strict": "Strict", "none": "None", "default": "Lax"}
#: The longest idle timeout, absolute lifetime or GC interval (seconds) accepted: 10 years.
#: Past it a deadline stops being a date every store can hold.
MAX_LIFETIME = 10 * 365 * 86400


@dataclass(frozen=True, slots=True, kw_only=True)
class ManagerConfig:
    """Every manager setting, with secure defaults. Seed JSON key names are in comments."""

    cookie_name: str = "gosessionid"  # cookieName
    enable_set_cookie: bool = True  # enableSetCookie
    gc_lifetime: int = 3600  # gclifetime: seconds between background GC passes
    max_lifetime: int = 0  # maxLifetime: idle timeout in seconds; 0 means gc_lifetime
    absolute_lifetime: int = 86400  # absoluteLifetime: hard cap from creation, seconds
    disable_http_only: bool = False  # disableHTTPOnly
    secure: bool = False  # secure: always mark the cookie Secure (https requests always are)
    cookie_life_time: int = 0  # cookieLifeTime: 0 is a browser-session cookie
    cookie_path: str = "/"  # cookiePath
    provider_config: Any = ""  # providerConfig: a string or a mapping, per provider
    domain: str = ""  # domain
    session_id_length: int = 16  # sessionIDLength: random bytes (hex doubles it)
    session_id_prefix: str = ""  # sessionIDPrefix
    cookie_same_site: str = "Lax"  # cookieSameSite: Go's integer or a name
    enable_sid_in_http_header: bool = False  # EnableSidInHTTPHeader
    session_name_in_http_header: str = ""  # SessionNameInHTTPHeader
    enable_sid_in_url_query: bool = False  # EnableSidInURLQuery (risky: IDs leak in logs)
    user_key: str = "_user"  # userKey: the session key holding the user it is bound to
    max_sessions_per_user: int = 0  # maxSessionsPerUser: 0 is no cap; else the oldest go
    codec: Codec = field(default_factory=JSONCodec)  # Python only

    @property
    def idle_timeout(self) -> int:
        """The effective idle timeout: ``max_lifetime``, or ``gc_lifetime`` when unset."""
        return self.max_lifetime or self.gc_lifetime

    def __post_init__(self) -> None:
        _validate(self)


_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "cookie_name": str,
    "enable_set_cookie": bool,
    "gc_lifetime": int,
    "max_lifetime": int,
    "absolute_lifetime": int,
    "disable_http_only": bool,
    "secure": bool,
    "cookie_life_time": int,
    "cookie_path": str,
    "provider_config": (str, Mapping),
    "domain": str,
    "session_id_length": int,
    "session_id_prefix": str,
    "cookie_same_site": (str, int),
    "enable_sid_in_http_header": bool,
    "session_name_in_http_header": str,
    "enable_sid_in_url_query": bool,
    "user_key": str,
    "max_sessions_per_user": int,
}

# The seed's JSON names, as written in beego's ManagerConfig tags.
_SEED_NAMES = {
    "cookieName": "cookie_name",
    "enableSetCookie": "enable_set_cookie",
    "gclifetime": "gc_lifetime",
    "maxLifetime": "max_lifetime",
    "absoluteLifetime": "absolute_lifetime",
    "disableHTTPOnly": "disable_http_only",
    "secure": "secure",
    "cookieLifeTime": "cookie_life_time",
    "cookiePath": "cookie_path",
    "providerConfig": "provider_config",
    "domain": "domain",
    "sessionIDLength": "session_id_length",
    "sessionIDPrefix": "session_id_prefix",
    "cookieSameSite": "cookie_same_site",
    "EnableSidInHTTPHeader": "enable_sid_in_http_header",
    "SessionNameInHTTPHeader": "session_name_in_http_header",
    "EnableSidInURLQuery": "enable_sid_in_url_query",
    "userKey": "user_key",
    "maxSessionsPerUser": "max_sessions_per_user",
}
_LOOKUP = {name.lower(): attr for name, attr in _SEED_NAMES.items()}
_LOOKUP.update({attr: attr for attr in _FIELD_TYPES})
_LOOKUP["codec"] = "codec"
_KNOWN = sorted(set(_SEED_NAMES) | set(_FIELD_TYPES) | {"codec"})


def _field_for(key: str) -> str:
    attr = _LOOKUP.get(key) or _LOOKUP.get(key.lower())
    if attr is None:
        close = difflib.get_close_matches(key, _KNOWN, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigurationError(f"unknown session config key {key!r}{hint}", key=key)
    return attr


def _check_type(key: str, attr: str, value: Any) -> Any:
    expected = _FIELD_TYPES.get(attr)
    if expected is None:
        return value
    # bool is an int in Python but never in JSON: keep them apart, as Go does.
    if expected is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigurationError(
            f"{key}: expected a whole number of seconds or bytes, got {value!r}", key=key
        )
    if expected is bool and not isinstance(value, bool):
        raise ConfigurationError(f"{key}: expected true or false, got {value!r}", key=key)
    if not isinstance(value, expected):
        raise ConfigurationError(f"{key}: unexpected value {value!r}", key=key)
    return value


def _decode_json(text: str) -> Mapping[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if text.strip() else ""
        caret = " " * (exc.colno - 1) + "^"
        raise ConfigurationError(
            f"invalid JSON session config at line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}\n    {line}\n    {caret}",
            key=None,
        ) from None
    if not isinstance(value, dict):
        raise ConfigurationError("a JSON session config must be an object {...}")
    return value


def parse_config(
    config: str | Mapping[str, Any] | ManagerConfig | None = None, **overrides: Any
) -> ManagerConfig:
    """Build a :class:`ManagerConfig` from the seed's JSON, a mapping, or an object.

    Keyword arguments override what ``config`` says. Keys match the seed's JSON names
    case-insensitively, or the Python field names; an unknown key is an error that names
    the closest known one.
    """
    values: dict[str, Any] = {}
    if isinstance(config, ManagerConfig):
        values.update({f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
        given: Mapping[str, Any] = {}
    elif isinstance(config, str):
        given = _decode_json(config) if config.strip() else {}
    elif config is None:
        given = {}
    elif isinstance(config, Mapping):
        given = config
    else:
        raise ConfigurationError(
            f"config must be a JSON string, a mapping or a ManagerConfig, not "
            f"{type(config).__name__}"
        )
    seen: dict[str, str] = {}
    for source in (given, overrides):
        for key, value in source.items():
            if not isinstance(key, str):
                raise ConfigurationError(f"config keys must be strings, got {key!r}")
            attr = _field_for(key)
            if source is given and attr in seen and seen[attr] != key:
                raise ConfigurationError(
                    f"{key}: given twice (also as {seen[attr]!r})", key=key
                )
            seen[attr] = key
            values[attr] = _check_type(key, attr, value)
    if "cookie_same_site" in values:
        values["cookie_same_site"] = _samesite(values["cookie_same_site"])
    return ManagerConfig(**values)


def _samesite(value: str | int) -> str:
    if isinstance(value, int):
        if value not in _SAMESITE_INTS:
            raise ConfigurationError(
                f"cookieSameSite: {value} is not one of Go's SameSite values 0-4",
                key="cookieSameSite",
            )
        return _SAMESITE_INTS[value]
    name = _SAMESITE_NAMES.get(value.lower())
    if name is None:
        raise ConfigurationError(
            f"cookieSameSite: {value!r} is not Lax, Strict or None", key="cookieSameSite"
        )
    return name


def _validate(cfg: ManagerConfig) -> None:
    def fail(key: str, why: str) -> None:
        raise ConfigurationError(f"{key}: {why}", key=key)

    def seconds(key: str, value: int, low: int, high: int, meaning: str) -> None:
        if not low <= value <= high:
            fail(key, f"{value} is out of range: give {meaning} from {low} to {high}")

    if not valid_cookie_name(cfg.cookie_name):
        fail("cookieName", f"{cfg.cookie_name!r} is not a valid cookie name")
    seconds("gclifetime", cfg.gc_lifetime, 1, MAX_LIFETIME,
            "the seconds between GC passes (it must be positive, or the GC would spin)")
    seconds("maxLifetime", cfg.max_lifetime, 0, MAX_LIFETIME,
            "the idle timeout in seconds (0 means gclifetime)")
    seconds("absoluteLifetime", cfg.absolute_lifetime, 1, MAX_LIFETIME,
            "the absolute lifetime in seconds")
    seconds("cookieLifeTime", cfg.cookie_life_time, 0, MAX_COOKIE_AGE,
            "the cookie's Max-Age in seconds (0 is a browser-session cookie; browsers keep "
            "a cookie 400 days at most)")
    if cfg.cookie_path and not valid_cookie_path(cfg.cookie_path):
        fail("cookiePath", f"{cfg.cookie_path!r} is not a cookie path: it must start with / "
             "and hold at most 1024 printable ASCII characters other than ;")
    if cfg.domain and not valid_cookie_domain(cfg.domain):
        fail("domain", f"{cfg.domain!r} is not a host name (letters, digits, - and .)")
    if cfg.max_sessions_per_user < 0:
        fail("maxSessionsPerUser", "must not be negative (0 means no cap)")
    if not cfg.user_key:
        fail("userKey", "must name a session key")
    if cfg.cookie_same_site not in ("Lax", "Strict", "None"):
        fail("cookieSameSite", f"{cfg.cookie_same_site!r} is not Lax, Strict or None")
    if cfg.cookie_same_site == "None" and not cfg.secure:
        fail("cookieSameSite", "SameSite=None needs secure=true; browsers reject it otherwise")
    # Browsers match the prefixes case-insensitively, so "__host-sid" binds them too.
    prefix = cfg.cookie_name[:9].lower()
    if prefix.startswith("__host-"):
        if cfg.domain:
            fail("domain", "a __Host- cookie must not set a domain")
        if cfg.cookie_path != "/":
            fail("cookiePath", "a __Host- cookie must use path /")
        if not cfg.secure:
            fail("secure", "a __Host- cookie needs secure=true")
    if prefix == "__secure-" and not cfg.secure:
        fail("secure", "a __Secure- cookie needs secure=true")
    if (cfg.session_name_in_http_header or cfg.enable_sid_in_http_header) and not (
        valid_cookie_name(cfg.session_name_in_http_header)
    ):
        fail(
            "SessionNameInHTTPHeader",
            f"{cfg.session_name_in_http_header!r} is not a valid header name"
            + (" (EnableSidInHTTPHeader needs one)" if cfg.enable_sid_in_http_header else ""),
        )
    if not isinstance(cfg.codec, Codec):
        fail("codec", "must have encode() and decode() methods")
    SessionIDs(cfg.session_id_length, cfg.session_id_prefix)
