"""The login demo as a Flask application: the same pages as :mod:`demo.app`, with
websession as ``flask.session`` (:mod:`websession.flask`).

``make_app(manager)`` builds the Flask app; ``serve(manager, host, port)`` serves it with
the demo's threaded server until Ctrl-C or SIGTERM. Login gives the session a new ID
(``session.regenerate_id()``: one call); logout is Flask's ``session.clear()``, which
deletes the session and expires its cookie. The session page, its burst of concurrent
requests and the regenerate button work as in the WSGI demo.
"""

from __future__ import annotations

import html
import time
from http import HTTPStatus

from flask import Flask, Response, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from websession import Manager, StoreUnavailableError
from websession.flask import FlaskSession, Session, session

from .app import (
    _BURST_KEY,
    _DIGITS,
    _WELCOME,
    BURST_WORK_SECONDS,
    MAX_BODY_BYTES,
    MAX_BURST,
    MAX_USERNAME_CHARS,
    _HTTPError,
    _login_page,
    _page,
    _same_origin,
    _session_page,
    _state,
    make_server,
    serve_until_stopped,
)
from .assets import CSP

__all__ = ["flask_manager", "make_app", "serve"]

_HTML = "text/html; charset=utf-8"
_FORM = "application/x-www-form-urlencoded"


def flask_manager(manager: Manager) -> Manager:
    """``manager`` if it hands out Flask sessions; otherwise a new manager of the same
    provider class and configuration that does (the caller closes it)."""
    if issubclass(manager.engine.session_class, FlaskSession):
        return manager
    return Manager(type(manager.provider), manager.config, session_class=FlaskSession)


def _html(body: bytes, status: HTTPStatus = HTTPStatus.OK) -> Response:
    return Response(body, status=status.value, content_type=_HTML)


def _form_value(name: str) -> str:
    """One field of a form body; anything but a form is refused."""
    if request.mimetype != _FORM:
        raise _HTTPError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "Please submit the login form.")
    return request.form.get(name, "")


def make_app(manager: Manager, provider: str | None = None) -> Flask:
    """The demo's Flask application over ``manager`` (which must hand out
    :class:`~websession.flask.FlaskSession`: see :func:`flask_manager`).

    ``provider`` is the name the session page shows (the provider's class name if
    omitted)."""
    provider_name = provider or type(manager.provider).__name__
    app = Flask("websession-demo")
    app.config.update(WEBSESSION_CONFIG=manager, MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
                      MAX_FORM_PARTS=16)
    Session(app)

    @app.before_request
    def refuse_cross_site_posts() -> ResponseReturnValue | None:
        if request.method == "POST" and not _same_origin(request.environ):
            return _html(_page("Forbidden", "<p>Cross-site requests are refused. "
                               '<a href="/">Home</a></p>'), HTTPStatus.FORBIDDEN)
        return None

    @app.after_request
    def page_headers(response: Response) -> Response:
        if response.mimetype == "text/html" and response.status_code != HTTPStatus.SEE_OTHER:
            # Every page depends on who is logged in: keep it out of every cache.
            response.headers["Cache-Control"] = "no-store"
            response.headers["Content-Security-Policy"] = CSP
            response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.errorhandler(_HTTPError)
    def refused(exc: _HTTPError) -> ResponseReturnValue:
        if request.path == "/login":
            return _html(_login_page(error=exc.message), exc.status)
        return _html(_page("Bad request", f"<p>{html.escape(exc.message)}</p>"), exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        page = _html(_page(exc.name, f'<p>{html.escape(exc.name)}. <a href="/">Home</a></p>'),
                     HTTPStatus(exc.code or 500))
        for name, value in exc.get_headers(request.environ):
            if name == "Allow":
                page.headers["Allow"] = value
        return page

    @app.errorhandler(StoreUnavailableError)
    def unavailable(exc: StoreUnavailableError) -> ResponseReturnValue:
        app.logger.error("demo: %s", exc)
        session.stand_down()  # the rest of the request must not try the store again
        page = _html(_page("Unavailable", "<p>The session store is unavailable; try again.</p>"),
                     HTTPStatus.SERVICE_UNAVAILABLE)
        page.headers["Retry-After"] = "5"
        # A failed save answers after the after_request functions ran: set theirs here.
        return page_headers(page)

    @app.route("/", methods=["GET", "HEAD"])
    def index() -> ResponseReturnValue:
        username = session.get("username")
        if not isinstance(username, str) or not username:
            return _html(_login_page())
        content = _WELCOME.format(username=html.escape(username),
                                  active=manager.get_active_session())
        return _html(_page("Welcome", content))

    @app.post("/login")
    def login() -> ResponseReturnValue:
        username = _form_value("username").strip()
        if not username:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "Please enter a username.")
        if len(username) > MAX_USERNAME_CHARS:
            raise _HTTPError(HTTPStatus.BAD_REQUEST,
                           f"Usernames have at most {MAX_USERNAME_CHARS} characters.")
        # A new ID at every privilege change: an ID planted before login is worthless.
        session.regenerate_id()
        session["username"] = username
        return _redirect("/")

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        session.clear()  # Flask's logout: the record is deleted and the cookie expired
        return _redirect("/")

    @app.route("/session", methods=["GET", "HEAD"])
    def session_page() -> ResponseReturnValue:
        return _html(_session_page(session, manager, provider_name))

    @app.get("/session/state")
    def session_state() -> ResponseReturnValue:
        response = jsonify(_state(session))
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.post("/session/burst/start")
    def burst_start() -> ResponseReturnValue:
        raw = _form_value("requests")
        if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_BURST:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, f"Send 1 to {MAX_BURST} requests.")
        for key in [k for k in session if _BURST_KEY.fullmatch(k)]:
            del session[key]
        # Stores the session if it was not yet, so the burst's requests all share it.
        session["burst_requests"] = int(raw)
        return jsonify(ok=True)

    @app.post("/session/burst")
    def burst() -> ResponseReturnValue:
        raw = _form_value("key")
        if not _DIGITS.fullmatch(raw) or int(raw) >= MAX_BURST:
            raise _HTTPError(HTTPStatus.BAD_REQUEST, "Bad key.")
        session.get("burst_requests")  # read first, as a handler does
        time.sleep(BURST_WORK_SECONDS)
        session[f"burst-{int(raw):02d}"] = int(raw)
        return jsonify(ok=True)

    @app.post("/session/regenerate")
    def regenerate() -> ResponseReturnValue:
        if not session.is_new:  # an unsaved session has no ID worth replacing
            session.regenerate_id()
        return _redirect("/session")

    return app


def _redirect(location: str) -> Response:
    """303 See Other: the browser follows with a GET, so a reload does not re-POST."""
    body = f'<!doctype html>\n<p><a href="{location}">Continue</a></p>\n'
    return Response(body, status=HTTPStatus.SEE_OTHER.value, content_type=_HTML,
                    headers={"Location": location})


def serve(manager: Manager, host: str, port: int) -> None:
    """Serve the Flask demo over ``manager`` on ``host:port`` until Ctrl-C or SIGTERM.

    A manager that does not hand out Flask sessions is replaced by one of the same
    provider class and configuration (closed on exit; ``manager`` is left to its owner).
    The background GC runs while the server does.
    """
    own = flask_manager(manager)
    try:
        server = make_server(host, port, make_app(own, type(own.provider).__name__))
        own.start_gc()
        try:
            serve_until_stopped(server, "websession Flask demo")
        finally:
            own.stop_gc()
    finally:
        if own is not manager:
            own.close()
