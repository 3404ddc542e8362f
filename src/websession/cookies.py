"""Reading the session cookie from a ``Cookie`` header and building ``Set-Cookie``.

The syntax rules live here, once: :func:`valid_cookie_name`, :func:`valid_cookie_path`
and :func:`valid_cookie_domain` are what the manager's configuration is checked with, and
:func:`dump_cookie` refuses anything they refuse, so no value can add an attribute or
split the header (CR, LF, ``;``).
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate

__all__ = [
    "MAX_COOKIE_AGE",
    "dump_cookie",
    "parse_cookie",
    "parse_cookie_values",
    "valid_cookie_domain",
    "valid_cookie_name",
    "valid_cookie_path",
]

#: The longest ``Max-Age`` (seconds) accepted: 400 days, the most browsers keep a cookie.
MAX_COOKIE_AGE = 400 * 86400

# RFC 6265 cookie-name (an RFC 7230 token); also the rule for header names.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r'[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*')
# RFC 6265 path-value: printable ASCII but ";". It must start with "/": browsers ignore
# any other path and use the request's directory instead.
_PATH = re.compile(r"/[\x20-\x3a\x3c-\x7e]{0,1023}")
# RFC 6265 domain-value: host name labels; a leading dot is allowed (browsers drop it).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"\.?{_LABEL}(?:\.{_LABEL})*")
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


def valid_cookie_name(name: str) -> bool:
    """Tell whether ``name`` is a valid cookie (or header) name: an RFC 7230 token."""
    return _TOKEN.fullmatch(name) is not None


def valid_cookie_path(path: str) -> bool:
    """Tell whether ``path`` is a safe ``Path`` attribute: ``/`` then printable ASCII but
    ``;``, at most 1024 characters (browsers ignore longer attributes)."""
    return _PATH.fullmatch(path) is not None


def valid_cookie_domain(domain: str) -> bool:
    """Tell whether ``domain`` is a host name fit for a ``Domain`` attribute."""
    return len(domain) <= 253 and _DOMAIN.fullmatch(domain) is not None


def parse_cookie_values(header: str, name: str) -> list[str]:
    """Return every value of the cookies called ``name`` in a ``Cookie`` header, in order.

    A browser sends a cookie once per path it was set for, the most specific path first,
    and a server may join two ``Cookie`` headers with ``,``; so one name can carry a stale
    value before the live one, and a caller must consider each. A value ends at ``;`` or
    ``,`` (session IDs never hold either). Surrounding double quotes are removed, nothing
    is unescaped, and empty or repeated values are left out.
    """
    target = name + "="
    if header.startswith(target):  # the common case: our cookie first, and only once
        end = header.find(";")
        value = header[len(target) : end if end >= 0 else None]
        if "," not in value and (end < 0 or header.find(target, end) < 0):
            value = value.strip()
            # (The membership test first: every request runs this, and IDs hold no quote.)
            if '"' in value and len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return [value] if value else []
    values: list[str] = []
    at = header.find(target)
    while at >= 0:
        start = at + len(target)
        before = at
        while before and header[before - 1] in " \t":
            before -= 1
        # Only at the start of a cookie: not inside another's name ("xsid=") or value.
        if not before or header[before - 1] in ";,":
            semicolon, comma = header.find(";", start), header.find(",", start)
            end = semicolon if comma < 0 or 0 <= semicolon < comma else comma
            value = header[start : end if end >= 0 else None].strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            if value and value not in values:
                values.append(value)
        at = header.find(target, start)
    return values


def parse_cookie(header: str, name: str) -> str | None:
    """Return the first value of the cookie ``name`` (see :func:`parse_cookie_values`)."""
    values = parse_cookie_values(header, name)
    return values[0] if values else None


def dump_cookie(
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    path: str = "/",
    domain: str | None = None,
    secure: bool = False,
    httponly: bool = True,
    samesite: str | None = "Lax",
) -> str:
    """Build a ``Set-Cookie`` header value.

    ``max_age=None`` makes a browser-session cookie; ``max_age=0`` deletes the cookie
    (both ``Max-Age=0`` and an ``Expires`` in the past are sent, for old clients). A name,
    value, path or domain that could change the header's meaning is a ``ValueError``.
    """
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid cookie name {name!r}")
    if not _VALUE.fullmatch(value):
        raise ValueError(f"invalid cookie value for {name!r}")
    parts = [f"{name}={value}"]
    if max_age is not None:
        if not 0 <= max_age <= MAX_COOKIE_AGE:
            max_age = 0 if max_age < 0 else MAX_COOKIE_AGE  # what a browser would make of it
        parts.append(f"Max-Age={max_age}")
        expires = 0.0 if max_age <= 0 else time.time() + max_age
        parts.append("Expires=" + formatdate(expires, usegmt=True))
    if path:
        if not valid_cookie_path(path):
            raise ValueError(f"invalid cookie path {path!r}")
        parts.append(f"Path={path}")
    if domain:
        if not valid_cookie_domain(domain):
            raise ValueError(f"invalid cookie domain {domain!r}")
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite:
        normal = _SAMESITE.get(samesite.lower())
        if normal is None:
            raise ValueError(f"SameSite must be Lax, Strict or None, not {samesite!r}")
        parts.append(f"SameSite={normal}")
    return "; ".join(parts)
