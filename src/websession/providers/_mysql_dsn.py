"""Reading a MySQL DSN — the seed's Go form, or a ``mysql://`` URL — into connection settings.

Errors are :class:`~websession.ConfigurationError` and never echo the DSN: it may hold a
password. The forms and parameters are described in :mod:`websession.providers.mysql`.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..exceptions import ConfigurationError
from ._options import parse_address, parse_duration

__all__ = ["MySQLParams", "parse_dsn"]

_WHERE = "providerConfig: invalid MySQL DSN"
_DEFAULT_PORT = 3306
# Every connection: one statement per transaction, and no gap locks (see the provider).
_INIT_COMMAND = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"
# The protocol's CLIENT_FOUND_ROWS flag (pymysql.constants.CLIENT.FOUND_ROWS): UPDATE
# reports matched rows, not changed ones, so a touch to the same deadline is a success.
_CLIENT_FOUND_ROWS = 2

# go-sql-driver/mysql switches that change nothing for a session table.
_IGNORED_PARAMS = frozenset(
    name.lower() for name in (
        "allowAllFiles", "allowCleartextPasswords", "allowFallbackToPlaintext",
        "allowNativePasswords", "allowOldPasswords", "checkConnLiveness", "clientFoundRows",
        "collation", "columnsWithAlias", "compress", "connectionAttributes",
        "interpolateParams", "loc", "maxAllowedPacket", "multiStatements", "parseTime",
        "rejectReadOnly", "serverPubKey", "strict", "timeTruncate",
    )
)


@dataclass(frozen=True, slots=True)
class MySQLParams:
    """Connection settings read from a DSN, for PyMySQL and aiomysql alike."""

    host: str = "127.0.0.1"
    port: int = _DEFAULT_PORT
    user: str = ""
    password: str = field(default="", repr=False)
    database: str = ""
    unix_socket: str | None = None
    charset: str = "utf8mb4"
    connect_timeout: float | None = 5.0
    read_timeout: float | None = None
    write_timeout: float | None = None
    ssl: ssl.SSLContext | None = field(default=None, compare=False)

    def kwargs(self, *, asynchronous: bool) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` or ``aiomysql.connect``."""
        kwargs: dict[str, Any] = {
            "host": self.host, "port": self.port, "user": self.user or None,
            "password": self.password,
            "unix_socket": self.unix_socket, "charset": self.charset,
            "connect_timeout": self.connect_timeout, "autocommit": True,
            "client_flag": _CLIENT_FOUND_ROWS, "init_command": _INIT_COMMAND,
            "ssl": self.ssl,
        }
        if asynchronous:
            kwargs["db"] = self.database or None
        else:
            kwargs["database"] = self.database or None
            kwargs["read_timeout"] = self.read_timeout
            kwargs["write_timeout"] = self.write_timeout
            # PyMySQL would try TLS unasked; Go's driver, and aiomysql, use it when asked.
            kwargs["ssl_disabled"] = self.ssl is None
        return kwargs


def parse_dsn(dsn: str) -> MySQLParams:
    """Read a Go DSN or a ``mysql://`` URL; a malformed one is a :class:`ConfigurationError`."""
    if not isinstance(dsn, str) or not dsn.strip():
        raise ConfigurationError("providerConfig: the MySQL DSN is empty", key="dsn")
    dsn = dsn.strip()
    scheme = dsn.partition("://")[0].lower() if "://" in dsn else ""
    if scheme:
        if scheme not in ("mysql", "mariadb", "mysql+pymysql"):
            raise _bad(f"unknown URL scheme {scheme!r} (use mysql:// or a Go DSN)")
        return _parse_url(dsn)
    return _parse_go(dsn)


def _bad(problem: str) -> ConfigurationError:
    # Never the DSN itself: it may hold a password.
    return ConfigurationError(f"{_WHERE}: {problem}", key="dsn")


def _parse_url(dsn: str) -> MySQLParams:
    try:
        url = urlsplit(dsn)
        port = url.port
    except ValueError as exc:
        raise _bad(str(exc)) from None
    settings: dict[str, Any] = {
        "host": url.hostname or "127.0.0.1",
        "port": port or _DEFAULT_PORT,
        "user": unquote(url.username or ""),
        "password": unquote(url.password or ""),
        "database": unquote(url.path.lstrip("/")),
    }
    if "/" in settings["database"]:
        raise _bad("the database name must not contain '/'")
    _apply_params(url.query, settings)
    return MySQLParams(**settings)


def _parse_go(dsn: str) -> MySQLParams:
    # As go-sql-driver/mysql's ParseDSN: the last '/' ends the address (passwords and
    # socket paths may hold '/'); the last '@' before it ends the credentials, whose
    # first ':' splits user from password; "net(address)" sits between them.
    slash = dsn.rfind("/")
    if slash < 0:
        raise _bad("no '/' before the database name (expected "
                   "user:password@tcp(host:port)/dbname)")
    head, tail = dsn[:slash], dsn[slash + 1:]
    settings: dict[str, Any] = {}
    at = head.rfind("@")
    if at >= 0:
        user, _, password = head[:at].partition(":")
        settings["user"], settings["password"] = user, password
    net_address = head[at + 1:]
    net, paren, address = net_address.partition("(")
    if paren:
        if not address.endswith(")"):
            raise _bad("the address must be closed by ')' right before '/'"
                       if ")" not in address else
                       "unescaped ')' or '/' in the address or a parameter value")
        address = address[:-1]
    net = net or "tcp"
    if net in ("tcp", "tcp4", "tcp6"):
        if address:
            if address.startswith(":"):  # Go dials a missing host as this machine
                address = "127.0.0.1" + address
            settings["host"], settings["port"] = parse_address(
                address, _DEFAULT_PORT, key="dsn", where=_WHERE)
    elif net == "unix":
        settings["unix_socket"] = address or "/tmp/mysql.sock"
    else:
        raise _bad(f"unknown network {net!r} (use tcp or unix)")
    database, _, query = tail.partition("?")
    settings["database"] = unquote(database)
    _apply_params(query, settings)
    return MySQLParams(**settings)


def _apply_params(query: str, settings: dict[str, Any]) -> None:
    for name, value in parse_qsl(query, keep_blank_values=True):
        key = name.lower().replace("_", "")
        if key == "charset":
            settings["charset"] = value.split(",")[0].strip()
            if not settings["charset"]:
                raise _bad("charset is empty")
        elif key in ("timeout", "connecttimeout"):
            settings["connect_timeout"] = _seconds(name, value)
        elif key == "readtimeout":
            settings["read_timeout"] = _seconds(name, value)
        elif key == "writetimeout":
            settings["write_timeout"] = _seconds(name, value)
        elif key in ("tls", "ssl"):
            settings["ssl"] = _tls(value)
        elif key in ("unixsocket", "socket"):
            settings["unix_socket"] = value
        elif key not in _IGNORED_PARAMS:
            raise _bad(f"unknown parameter {name!r} (known: charset, timeout, "
                       "readTimeout, writeTimeout, tls, unix_socket)")


def _seconds(name: str, value: str) -> float | None:
    # 0, as in Go: no timeout.
    return parse_duration(value, key=name, where=_WHERE) or None


def _tls(value: str) -> ssl.SSLContext | None:
    mode = value.lower()
    if mode in ("false", "0", ""):
        return None
    if mode in ("true", "1"):
        return ssl.create_default_context()
    if mode in ("skip-verify", "preferred"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    raise _bad(f"tls={value!r}: use true, skip-verify, preferred or false (named TLS "
               "configurations are a Go feature; pass an SSL context in a pool instead)")
