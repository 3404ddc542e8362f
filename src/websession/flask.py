"""Flask integration: websession becomes ``flask.session``.

::

    from flask import Flask, session
    from websession.flask import Session

    app = Flask(__name__)
    app.config["WEBSESSION_PROVIDER"] = "redis"
    app.config["WEBSESSION_CONFIG"] = {"providerConfig": "redis://127.0.0.1:6379/0"}
    Session(app)  # or Session().init_app(app) in an application factory

:class:`Session` installs :class:`WebSessionInterface` as ``app.session_interface``, so
``flask.session`` is a :class:`FlaskSession`: a websession session (changes are saved
per key and merged with concurrent requests) with Flask's session attributes (``new``,
``modified``, ``accessed``, ``permanent``) and ``sid``.

Configuration comes from Flask's own keys, with Flask's defaults, read by ``init_app``:

* ``SESSION_COOKIE_NAME`` (``session``), ``SESSION_COOKIE_DOMAIN``, ``SESSION_COOKIE_PATH``
  (falls back to ``APPLICATION_ROOT``), ``SESSION_COOKIE_HTTPONLY``,
  ``SESSION_COOKIE_SECURE``, ``SESSION_COOKIE_SAMESITE`` (Flask's unset means ``Lax``,
  which is what browsers assume), ``SESSION_COOKIE_PARTITIONED`` (forces ``Secure``, as
  Flask does);
* ``PERMANENT_SESSION_LIFETIME`` (31 days): the idle timeout, enforced by the store, of
  every session. ``session.permanent = True`` gives the cookie a ``Max-Age`` that follows
  the server's deadline; other sessions have a browser-session cookie, as in Flask;
* ``SESSION_REFRESH_EACH_REQUEST`` (true): every request, read-only ones included, slides
  the idle deadline (written when a tenth of the lifetime has passed, not on every
  request), and a permanent session's cookie moves with it. False: the deadline still
  slides, but the cookie is re-sent only when the session is saved with changes;
* ``WEBSESSION_PROVIDER`` (``memory``): a provider name, class or instance;
* ``WEBSESSION_CONFIG``: the seed's JSON string or a dict for everything Flask's keys do
  not cover (``providerConfig``, ``absoluteLifetime``, ``sessionIDLength``, ``codec``…);
  naming a cookie setting there is an error that names the Flask key to use instead.
  ``absoluteLifetime`` defaults to a year (or ``PERMANENT_SESSION_LIFETIME`` if longer):
  Flask has no absolute limit, websession needs one. It can also be a ready
  :class:`~websession.Manager` made with ``session_class=FlaskSession``, used as it is
  (its own settings then decide the cookie);
* ``WEBSESSION_REGENERATE_ON_LOGIN`` (true): with Flask-Login installed, the session gets
  a new ID whenever a user logs in (``login_user``, or a remember-me cookie) or out.

Logging in and out:

* ``session.regenerate_id()``: a new ID, data kept; the old ID is deleted when the
  response is saved. Call it on every privilege change (Flask-Login's are done for you).
* ``session.clear()``: empties the session *and* gives it a new ID, so both of Flask's
  idioms are safe: ``session.clear(); session["user_id"] = id`` at login stores the user
  under a fresh ID, and ``session.clear()`` at logout deletes the record and expires the
  cookie. Any session that a request leaves empty is deleted and its cookie expired, as
  Flask's and Flask-Session's are.
* ``session.invalidate()``: deletes the record at once and continues with a fresh, empty
  session under a new ID.

A store outage (:class:`~websession.StoreUnavailableError`) answers 503 through Flask's
error handling, whether it happens in a view or while the session is saved; an
application's own error handler for 503 renders it. The rest of that request sees an
empty session that is not saved (``after_request`` functions such as Flask-Login's touch
the session), and the client's cookie is left as it is. An application that registers
its own handler for ``StoreUnavailableError`` replaces this one (call
``session.stand_down()`` in it to keep that behaviour).

``async def`` views use the session as sync ones do: with a provider that does I/O, the
session of a request routed to an async view is read before the view runs (off its event
loop, where a blocking read would raise :class:`~websession.SessionModeError`), and it is
saved after the view, off the loop too.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ._config import ManagerConfig, parse_config
from ._manager import Manager
from ._session import SessionStore
from .exceptions import ConfigurationError, MissingDependencyError, StoreUnavailableError

try:
    import flask
    from flask.sessions import SessionInterface, SessionMixin
    from werkzeug.exceptions import ServiceUnavailable
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without flask
    raise MissingDependencyError("flask", "flask", "flask", "adapter") from exc

if TYPE_CHECKING:
    from ._core import Engine
    from ._state import SessionState  # the engine's: passed through to SessionStore

__all__ = ["FlaskSession", "Session", "WebSessionInterface", "session"]

#: Where :meth:`Session.init_app` keeps the application's manager.
EXTENSION_KEY = "websession"
#: Flask has no absolute lifetime; websession needs one: this, or the permanent
#: lifetime if that is longer.
DEFAULT_ABSOLUTE_LIFETIME = 365 * 24 * 3600

# Seed keys (lowercased) and Python names that Flask's own configuration sets.
_FLASK_OWNED = {
    "cookiename": "SESSION_COOKIE_NAME",
    "cookie_name": "SESSION_COOKIE_NAME",
    "domain": "SESSION_COOKIE_DOMAIN",
    "cookiepath": "SESSION_COOKIE_PATH",
    "cookie_path": "SESSION_COOKIE_PATH",
    "disablehttponly": "SESSION_COOKIE_HTTPONLY",
    "disable_http_only": "SESSION_COOKIE_HTTPONLY",
    "secure": "SESSION_COOKIE_SECURE",
    "cookiesamesite": "SESSION_COOKIE_SAMESITE",
    "cookie_same_site": "SESSION_COOKIE_SAMESITE",
    "maxlifetime": "PERMANENT_SESSION_LIFETIME",
    "max_lifetime": "PERMANENT_SESSION_LIFETIME",
    "cookielifetime": "PERMANENT_SESSION_LIFETIME and session.permanent",
    "cookie_life_time": "PERMANENT_SESSION_LIFETIME and session.permanent",
}
_ABSOLUTE_KEYS = ("absolutelifetime", "absolute_lifetime")


class FlaskSession(SessionStore):
    """``flask.session``: a websession session with Flask's session attributes.

    The dict API and every websession call work as on :class:`~websession.SessionStore`.
    Flask's attributes:

    * ``new``: the session is not (yet) in the store.
    * ``modified``: there are changes to save. Setting it ``True`` forces a save
      (:meth:`~websession.SessionStore.mark_modified`); in-place changes of mutable values
      are found without it. Setting it ``False`` discards nothing: websession saves what
      each request changed.
    * ``accessed``: the request used the session (the response then varies on
      ``Cookie``); Flask sets it when ``flask.session`` is touched.
    * ``permanent``: ``True`` gives the cookie a ``Max-Age`` matching the server's idle
      deadline (``PERMANENT_SESSION_LIFETIME``); ``False`` (the default) makes it a
      browser-session cookie. Kept in the record, so it survives ``regenerate_id()``.
    * ``sid``: the session ID, as Flask-Session names it.

    :meth:`clear` empties the session and gives it a new ID (see the module's docs).
    """

    __slots__ = ("_now_transient", "_touched", "_unavailable")

    def __init__(self, engine: Engine, state: SessionState, secure: bool = False) -> None:
        super().__init__(engine, state, secure)
        self._touched = False
        self._now_transient = False
        self._unavailable = False

    @property
    def new(self) -> bool:
        """Whether the session is not (yet) in the store."""
        return self.is_new

    @property
    def modified(self) -> bool:
        """Whether there are changes that the end of the request will save."""
        return super().modified

    @modified.setter
    def modified(self, value: bool) -> None:
        if value:
            self.mark_modified()

    @property
    def accessed(self) -> bool:
        """Whether the request used the session (Flask sets it on every touch)."""
        return self._touched or super().accessed

    @accessed.setter
    def accessed(self, value: bool) -> None:
        self._touched = bool(value)

    @property
    def permanent(self) -> bool:
        """Whether the cookie outlives the browser session (Flask's ``permanent``)."""
        persistent = self.persistent
        if persistent is None:
            return bool(self.engine.config.cookie_life_time)
        return persistent

    @permanent.setter
    def permanent(self, value: bool) -> None:
        value = bool(value)
        if value == self.permanent:
            return  # apps set it on every request: only a change costs a write
        # Keep a lifetime of the session's own, if it has one; change only the cookie.
        idle, absolute, _ = self.own_lifetime
        self.set_lifetime(idle, absolute, persistent=value)
        # The core re-sends a persistent cookie on save, but not one that became a
        # browser-session cookie: the interface does.
        self._now_transient = not value

    @property
    def sid(self) -> str:
        """The session's ID (Flask-Session's name for it)."""
        return self.session_id()

    def stand_down(self) -> None:
        """The store is unavailable: for the rest of this request the session is empty,
        and nothing is saved and no cookie changes. The 503 handler calls it, so that
        ``after_request`` functions touching the session (Flask-Login's) do not fail
        again and turn the 503 into a 500."""
        self._unavailable = True
        self.abandon()

    @property
    def stood_down(self) -> bool:
        """Whether :meth:`stand_down` was called: nothing is saved for this request."""
        return self._unavailable

    def became_transient(self) -> bool:
        """Whether this request turned a permanent session into a browser-session one,
        whose cookie the response must replace (the browser still holds one with a
        ``Max-Age``); asking answers once."""
        transient, self._now_transient = self._now_transient, False
        return transient

    def clear(self) -> None:
        """Empty the session and give it a new ID.

        Values set afterwards are saved under the new ID (a login); if none are, the old
        record is deleted and the cookie expired (a logout). Either way the old ID is dead
        once the response is saved, and concurrent requests cannot bring it back.
        """
        self.flush()
        self.regenerate_id()


# Flask's type for a session; the session API is ours, the mapping API is the same.
SessionMixin.register(FlaskSession)

#: ``flask.session``, typed as :class:`FlaskSession` so type checkers know websession's
#: calls (``regenerate_id``, ``invalidate``, ``set_lifetime``…). The same proxy object.
session: FlaskSession = cast("FlaskSession", flask.session)


class WebSessionInterface(SessionInterface):
    """Flask's session interface over a websession :class:`~websession.Manager`.

    ``open_session`` reads nothing: the store is read when the session is first used.
    ``save_session`` runs on every request and always calls the core's release, so a
    read-only request slides the idle deadline when it is due, and translates its
    ``Set-Cookie``, ``Vary`` and ``Cache-Control`` headers into Flask's response.
    """

    pickle_based = False

    def __init__(self, manager: Manager, *, refresh_each_request: bool = True,
                 partitioned: bool = False) -> None:
        self.manager = manager
        self.refresh_each_request = refresh_each_request
        #: The core's cookie builder has no ``Partitioned``: it is appended here.
        self.cookie_suffix = "; Partitioned" if partitioned else ""

    def open_session(self, app: flask.Flask, request: flask.Request) -> SessionMixin:
        """The request's session; nothing is read from the store until it is used."""
        return cast(SessionMixin, self.manager.session_start(request.environ))

    def save_session(self, app: flask.Flask, session: SessionMixin,
                     response: flask.Response) -> None:
        """Save what the request changed (or refresh the deadline) and set the cookie.

        A store outage turns ``response`` into the application's 503 answer.
        """
        sess = cast(FlaskSession, session)
        if sess.stood_down:
            return  # the request already answered 503: keep the client's cookie as it is
        headers: list[tuple[str, str]] = []
        try:
            refresh_only = False
            if sess.loaded:
                # Flask's rule: a session the request left empty is deleted, and so is
                # its cookie.
                if sess.modified and not sess.is_new and not len(sess):
                    sess.invalidate()
                elif not self.refresh_each_request:
                    refresh_only = not sess.modified and not sess.is_new
            sess.session_release(headers)
        except StoreUnavailableError as exc:
            _become(response, _unavailable_response(app, exc))
            return
        if sess.became_transient():
            self._resend_as_browser_session_cookie(sess, headers)
        vary = sess.accessed
        for name, value in headers:
            if name == "Set-Cookie":
                if not refresh_only:
                    response.headers.add("Set-Cookie", value + self.cookie_suffix)
            elif name == "Cache-Control":
                if not refresh_only:  # no-store replaces the application's caching
                    response.headers["Cache-Control"] = value
            elif name == "Vary":
                vary = True
            else:
                response.headers[name] = value
        if vary:
            response.vary.add("Cookie")

    @staticmethod
    def _resend_as_browser_session_cookie(sess: FlaskSession,
                                          headers: list[tuple[str, str]]) -> None:
        """A permanent session turned non-permanent: the browser still holds a cookie
        with a ``Max-Age``; replace it with a browser-session cookie."""
        if sess.is_new or sess.permanent or any(name == "Set-Cookie" for name, _ in headers):
            return  # not stored, permanent after all, or the core sent the cookie
        engine = sess.engine
        headers.append(("Set-Cookie",
                        engine.cookie(sess.session_id(), flask.request.is_secure)))
        headers.append(("Cache-Control", "no-store"))


def _unavailable_response(app: flask.Flask, exc: StoreUnavailableError) -> flask.Response:
    """The application's answer to ``exc``: its handler for the error (ours answers 503)."""
    try:
        rv = app.handle_user_exception(exc)
    except StoreUnavailableError:  # the application removed every handler for it
        app.logger.error("session store unavailable: %s", exc)
        rv = ServiceUnavailable()
    return app.make_response(rv)


def _become(response: flask.Response, other: flask.Response) -> None:
    """Turn ``response`` into ``other`` (Flask ignores what save_session returns)."""
    close = getattr(response.response, "close", None)
    if close is not None:
        close()
    response.response = other.response
    response.status = other.status
    response.headers = other.headers
    response.direct_passthrough = other.direct_passthrough


def _store_unavailable(exc: StoreUnavailableError) -> Any:
    """The default handler: log the outage and answer 503 through Flask's HTTP error
    handling (so an application's own 503 handler renders it)."""
    app = flask.current_app
    app.logger.error("session store unavailable: %s", exc)
    current = flask.session._get_current_object()  # type: ignore[attr-defined]
    if isinstance(current, FlaskSession):
        current.stand_down()
    return app.handle_http_exception(ServiceUnavailable(
        "The session store is unavailable; please try again shortly."))


# -- configuration ------------------------------------------------------------------------


def _lifetime(app: flask.Flask) -> int:
    seconds = int(app.permanent_session_lifetime.total_seconds())
    if seconds < 1:
        raise ConfigurationError(
            "PERMANENT_SESSION_LIFETIME: must be at least one second (it is the sessions' "
            "idle timeout)", key="PERMANENT_SESSION_LIFETIME")
    return seconds


def _given_config(value: Any) -> Mapping[str, Any]:
    """``WEBSESSION_CONFIG`` as a mapping (JSON is decoded, with websession's messages)."""
    if value is None:
        return {}
    if isinstance(value, str):
        if not value.strip():
            return {}
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            decoded = None
        if not isinstance(decoded, dict):
            parse_config(value)  # raises the error naming the line and column
            raise ConfigurationError("WEBSESSION_CONFIG: a JSON config must be an object")
        return decoded
    if isinstance(value, Mapping):
        return value
    raise ConfigurationError(
        f"WEBSESSION_CONFIG: expected the seed's JSON string, a dict or a Manager, not "
        f"{type(value).__name__}", key="WEBSESSION_CONFIG")


def manager_config(app: flask.Flask) -> ManagerConfig:
    """The :class:`~websession.ManagerConfig` that ``app``'s configuration describes."""
    cfg = app.config
    given = _given_config(cfg.get("WEBSESSION_CONFIG"))
    for key in given:
        owner = _FLASK_OWNED.get(str(key).lower())
        if owner is not None:
            raise ConfigurationError(
                f"WEBSESSION_CONFIG: {key!r} is Flask's to set: use {owner}", key=str(key))
    lifetime = _lifetime(app)
    partitioned = bool(cfg.get("SESSION_COOKIE_PARTITIONED", False))
    flask_values: dict[str, Any] = {
        "cookie_name": cfg["SESSION_COOKIE_NAME"],
        "domain": cfg.get("SESSION_COOKIE_DOMAIN") or "",
        "cookie_path": cfg.get("SESSION_COOKIE_PATH") or cfg.get("APPLICATION_ROOT") or "/",
        "disable_http_only": not cfg.get("SESSION_COOKIE_HTTPONLY", True),
        # Partitioned cookies must be Secure: Flask (werkzeug) forces it too.
        "secure": bool(cfg.get("SESSION_COOKIE_SECURE")) or partitioned,
        "cookie_same_site": cfg.get("SESSION_COOKIE_SAMESITE") or "Lax",
        "max_lifetime": lifetime,
        "cookie_life_time": 0,  # non-permanent sessions: browser-session cookies
    }
    if not any(str(key).lower() in _ABSOLUTE_KEYS for key in given):
        flask_values["absolute_lifetime"] = max(DEFAULT_ABSOLUTE_LIFETIME, lifetime)
    try:
        return parse_config(given, **flask_values)
    except ConfigurationError as exc:
        owner = _FLASK_OWNED.get((exc.key or "").lower())
        if owner is None:
            raise
        raise ConfigurationError(f"{owner}: {exc}", key=owner) from exc


def manager_for(app: flask.Flask) -> Manager:
    """The :class:`~websession.Manager` that ``app``'s configuration describes."""
    given = app.config.get("WEBSESSION_CONFIG")
    if isinstance(given, Manager):
        if not issubclass(given.engine.session_class, FlaskSession):
            raise ConfigurationError(
                "WEBSESSION_CONFIG: a Manager for Flask must hand out Flask sessions: "
                "Manager(provider, config, session_class=websession.flask.FlaskSession)",
                key="WEBSESSION_CONFIG")
        return given
    provider = app.config.get("WEBSESSION_PROVIDER") or "memory"
    return Manager(provider, manager_config(app), session_class=FlaskSession)


class Session:
    """The Flask extension: ``Session(app)``, or ``Session()`` then :meth:`init_app`.

    After ``init_app``, ``flask.session`` is a :class:`FlaskSession` and the manager is
    ``app.extensions["websession"]`` (and :attr:`manager`, for the last app initialised).
    """

    def __init__(self, app: flask.Flask | None = None) -> None:
        #: The manager of the application last passed to :meth:`init_app`.
        self.manager: Manager | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> Manager:
        """Read ``app``'s configuration, install the session interface, and return the
        manager. Set the configuration before calling it."""
        manager = manager_for(app)
        cfg = app.config
        app.session_interface = WebSessionInterface(
            manager,
            refresh_each_request=bool(cfg.get("SESSION_REFRESH_EACH_REQUEST", True)),
            partitioned=bool(cfg.get("SESSION_COOKIE_PARTITIONED", False)),
        )
        app.extensions[EXTENSION_KEY] = manager
        # An application's own handler, registered before us, stays in charge.
        if StoreUnavailableError not in app.error_handler_spec[None][None]:
            app.register_error_handler(StoreUnavailableError, _store_unavailable)
        if manager.provider_blocks:
            app.before_request(_load_for_async_views)
        if cfg.get("WEBSESSION_REGENERATE_ON_LOGIN", True):
            _regenerate_on_login(app)
        self.manager = manager
        return manager


def _load_for_async_views() -> None:
    """Read the session before an ``async def`` view runs: Flask runs the view on an event
    loop of its own, where the blocking read would be refused."""
    request = flask.request
    rule = request.url_rule
    if rule is None:
        return
    view = flask.current_app.view_functions.get(rule.endpoint)
    if view is not None and inspect.iscoroutinefunction(view):
        session.load()


def _new_id_on_privilege_change(sender: Any, **extra: Any) -> None:
    """A user logged in or out: the session moves to a new ID (its data kept)."""
    current = flask.session._get_current_object()  # type: ignore[attr-defined]
    if isinstance(current, FlaskSession):
        current.regenerate_id()


def _regenerate_on_login(app: flask.Flask) -> None:
    try:
        from flask_login import signals  # type: ignore[import-untyped, unused-ignore]
    except ImportError:
        return
    for signal in (signals.user_logged_in, signals.user_logged_out,
                   signals.user_loaded_from_cookie):
        signal.connect(_new_id_on_privilege_change, sender=app, weak=False)
