"""websession as Flask's session: through Flask's test client and through a real server
(werkzeug's threaded server on 127.0.0.1), on memory, SQLite, Redis and PostgreSQL, with
Flask-Login and flash() unchanged."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import flask
import psycopg
import pytest
import redis
from flask import Flask, flash, get_flashed_messages, jsonify, session
from flask.typing import ResponseReturnValue
from flask_login import (  # type: ignore[import-untyped, unused-ignore]
    LoginManager,
    UserMixin,
    current_user,
    login_user,
    logout_user,
)
from tests.redis_servers import RedisServer, free_port, require_redis_binaries
from tests.servers import require_server
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

import websession.flask
from websession import ConfigurationError, Manager, SessionModeError
from websession.flask import FlaskSession, Session

HOST = "127.0.0.1"
REDIS_URL = f"redis://{HOST}:6379/0"
POSTGRES_DSN = f"postgresql://postgres@{HOST}:5432/test"
COOKIE = "session"
WORK_SECONDS = 0.02
CONCURRENT = 20

# -- stores ---------------------------------------------------------------------------------


@dataclass
class Store:
    provider: str
    config: dict[str, Any]


@pytest.fixture(params=["memory", "sqlite", "redis", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """Each store the Flask tests run on; whatever a test stored is removed afterwards."""
    name = request.param
    tag = uuid.uuid4().hex[:12]
    if name == "memory":
        yield Store("memory", {})
    elif name == "sqlite":
        yield Store("sqlite", {"providerConfig": str(tmp_path / "sessions.sqlite3")})
    elif name == "redis":
        require_server("Redis", HOST, 6379)
        prefix = f"wstest:flask:{tag}:"
        yield Store("redis", {"providerConfig": {"save_path": REDIS_URL, "key_prefix": prefix}})
        with redis.Redis.from_url(REDIS_URL) as client:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
    else:
        require_server("PostgreSQL", HOST, 5432)
        table = f"ws_flask_{tag}"
        yield Store("postgresql", {"providerConfig": {"dsn": POSTGRES_DSN, "table": table}})
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


MEMORY = Store("memory", {})


# -- the application ------------------------------------------------------------------------


class User(UserMixin):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        self.id = name


def make_app(store: Store = MEMORY, **config: Any) -> Flask:
    """A Flask app on websession, with Flask-Login, and the routes the tests call."""
    app = Flask(f"websession-test-{uuid.uuid4().hex[:6]}")
    app.config.update(SECRET_KEY="flask-login-signs-its-remember-cookie",
                      WEBSESSION_PROVIDER=store.provider, WEBSESSION_CONFIG=store.config)
    app.config.update(config)
    Session(app)
    login_manager = LoginManager(app)

    @login_manager.user_loader  # type: ignore[untyped-decorator, unused-ignore]
    def load_user(user_id: str) -> User:
        return User(user_id)

    @app.get("/start")
    def start() -> ResponseReturnValue:
        session["start"] = True
        return "ok"

    @app.get("/set/<int:i>")
    def set_key(i: int) -> ResponseReturnValue:
        session.get("start")  # read first, as a handler does
        time.sleep(WORK_SECONDS)
        session[f"k{i}"] = 1
        return "ok"

    @app.get("/put/<key>/<value>")
    def put(key: str, value: str) -> ResponseReturnValue:
        session[key] = value
        return "ok"

    @app.get("/data")
    def data() -> ResponseReturnValue:
        return jsonify(dict(session))

    @app.get("/nothing")
    def nothing() -> ResponseReturnValue:
        return "no session here"

    @app.get("/state")
    def state() -> ResponseReturnValue:
        sess = websession.flask.session
        return jsonify(new=sess.new, permanent=sess.permanent, modified=sess.modified,
                       sid=sess.sid, keys=sorted(sess), version=sess.version)

    @app.get("/short")
    def short() -> ResponseReturnValue:
        session["user"] = "ann"
        websession.flask.session.set_lifetime(idle=1)
        return "ok"

    @app.get("/permanent/<int:on>")
    def permanent(on: int) -> ResponseReturnValue:
        session.permanent = bool(on)
        session["user"] = "ann"
        return "ok"

    @app.post("/login")
    def login() -> ResponseReturnValue:
        login_user(User(flask.request.form["name"]),
                   remember=flask.request.form.get("remember") == "1")
        return "ok"

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        logout_user()
        return "ok"

    @app.get("/whoami")
    def whoami() -> ResponseReturnValue:
        user = current_user.id if current_user.is_authenticated else None
        return jsonify(user=user, data=dict(session))

    @app.post("/flask-login-idiom")
    def tutorial_login() -> ResponseReturnValue:
        # Flask's tutorial logs in with clear() then a key.
        session.clear()
        session["user_id"] = flask.request.form["name"]
        return "ok"

    @app.post("/clear")
    def clear() -> ResponseReturnValue:
        session.clear()
        return "ok"

    @app.post("/invalidate")
    def invalidate() -> ResponseReturnValue:
        websession.flask.session.invalidate()
        session["flash"] = "bye"
        return "ok"

    @app.post("/regenerate")
    def regenerate() -> ResponseReturnValue:
        websession.flask.session.regenerate_id()
        return "ok"

    @app.post("/pop/<key>")
    def pop(key: str) -> ResponseReturnValue:
        session.pop(key, None)
        return "ok"

    @app.get("/append/<item>")
    def append(item: str) -> ResponseReturnValue:
        session.setdefault("cart", [])
        session["cart"].append(item)  # in place: no __setitem__
        return "ok"

    @app.get("/flash/<message>")
    def flash_it(message: str) -> ResponseReturnValue:
        flash(message)
        return "ok"

    @app.get("/flashes")
    def flashes() -> ResponseReturnValue:
        return jsonify(get_flashed_messages())

    return app


@pytest.fixture
def closing() -> Iterator[Callable[[Flask], Flask]]:
    """Close the managers of the apps a test makes."""
    apps: list[Flask] = []

    def keep(app: Flask) -> Flask:
        apps.append(app)
        return app

    yield keep
    for app in apps:
        app.extensions["websession"].close()


# -- browsers: one cookie jar, requests through the test client or a real server ------------


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def set_cookies(self) -> list[str]:
        return [v for k, v in self.headers if k.lower() == "set-cookie"]

    def session_cookie(self) -> str | None:
        for value in self.set_cookies():
            if value.startswith(COOKIE + "="):
                return value
        return None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


Send = Callable[[str, str, str, dict[str, str] | None], Reply]


def client_send(app: Flask) -> Send:
    client = app.test_client(use_cookies=False)

    def send(method: str, path: str, cookie: str, form: dict[str, str] | None) -> Reply:
        response = client.open(path, method=method, data=form,
                               headers={"Cookie": cookie} if cookie else {})
        return Reply(response.status_code, list(response.headers.items()), response.data)

    return send


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def server_send(port: int) -> Send:
    def send(method: str, path: str, cookie: str, form: dict[str, str] | None) -> Reply:
        conn = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            headers = {"Cookie": cookie} if cookie else {}
            body = None
            if form is not None:
                body = urlencode(form)
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return Reply(response.status, response.getheaders(), response.read())
        finally:
            conn.close()

    return send


@pytest.fixture
def serve() -> Iterator[Callable[[Flask], int]]:
    """Serve apps with werkzeug's threaded server on 127.0.0.1; stopped afterwards."""
    servers: list[tuple[BaseWSGIServer, threading.Thread]] = []

    def start(app: Flask) -> int:
        server = make_server(HOST, 0, app, threaded=True, request_handler=_Quiet)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return server.port

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


class Browser:
    """A browser's cookies for one site, sent with each request; ``send`` carries them."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.cookies: dict[str, str] = {}

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    @property
    def sid(self) -> str | None:
        return self.cookies.get(COOKIE)

    def request(self, path: str, method: str = "GET",
                form: dict[str, str] | None = None) -> Reply:
        reply = self.send(method, path, self.cookie_header, form)
        assert reply.status == 200, (path, reply.status, reply.body[:300])
        self.keep(reply)
        return reply

    def keep(self, reply: Reply) -> None:
        for set_cookie in reply.set_cookies():
            pair, *attributes = set_cookie.split(";")
            name, _, value = pair.partition("=")
            gone = any(a.strip().lower() == "max-age=0" for a in attributes)
            if gone or not value:
                self.cookies.pop(name.strip(), None)
            else:
                self.cookies[name.strip()] = value.strip()

    def get(self, path: str) -> Reply:
        return self.request(path)

    def post(self, path: str, **form: str) -> Reply:
        return self.request(path, "POST", form)

    def replay(self, sid: str, path: str = "/whoami") -> Any:
        """What a request carrying only the session cookie ``sid`` sees."""
        reply = self.send("GET", path, f"{COOKIE}={sid}", None)
        assert reply.status == 200
        return reply.json()


@pytest.fixture(params=["test_client", "server"])
def browser_for(request: pytest.FixtureRequest, serve: Callable[[Flask], int],
                closing: Callable[[Flask], Flask]) -> Callable[[Flask], Browser]:
    """Browsers on an app, through Flask's test client or a real server."""

    def make(app: Flask) -> Browser:
        closing(app)
        if request.param == "test_client":
            return Browser(client_send(app))
        return Browser(server_send(serve(app)))

    return make


@pytest.fixture
def browser(closing: Callable[[Flask], Flask]) -> Callable[..., Browser]:
    """A test-client browser on a fresh app over memory (keyword arguments: config)."""

    def make(store: Store = MEMORY, **config: Any) -> Browser:
        return Browser(client_send(closing(make_app(store, **config))))

    return make


def attributes(set_cookie: str) -> dict[str, str]:
    parts = [p.strip() for p in set_cookie.split(";")[1:]]
    return {k.lower(): v for k, _, v in (p.partition("=") for p in parts)}


# -- what every store must do, through both clients -----------------------------------------


def test_concurrent_requests_on_one_session_keep_every_key(
        store: Store, browser_for: Callable[[Flask], Browser]) -> None:
    browser = browser_for(make_app(store))
    browser.get("/start")
    barrier = threading.Barrier(CONCURRENT)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            reply = browser.send("GET", f"/set/{i}", browser.cookie_header, None)
            assert reply.status == 200, reply.body[:300]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    kept = {k for k in browser.get("/data").json() if k.startswith("k")}
    assert kept == {f"k{i}" for i in range(CONCURRENT)}


def test_login_gives_a_new_id_and_the_pre_login_id_is_dead(
        store: Store, browser_for: Callable[[Flask], Browser]) -> None:
    browser = browser_for(make_app(store))
    browser.get("/put/cart/apples")
    planted = browser.sid
    assert planted
    browser.post("/login", name="ann")
    assert browser.sid and browser.sid != planted
    who = browser.get("/whoami").json()
    assert who["user"] == "ann" and who["data"]["cart"] == "apples"
    assert browser.replay(planted) == {"user": None, "data": {}}


def test_a_session_past_its_own_expiry_is_empty_on_replay(
        store: Store, browser_for: Callable[[Flask], Browser]) -> None:
    browser = browser_for(make_app(store))
    browser.get("/put/keep/me")
    browser.get("/short")  # this session's own idle timeout: 1 s
    sid = browser.sid
    assert sid
    assert browser.replay(sid, "/data") == {"keep": "me", "user": "ann"}
    time.sleep(1.3)
    assert browser.replay(sid, "/data") == {}


def test_read_only_requests_slide_the_idle_deadline(store: Store,
                                                    browser: Callable[..., Browser]) -> None:
    client = browser(store, PERMANENT_SESSION_LIFETIME=2)
    client.get("/put/user/ann")
    for _ in range(2):  # 2.4 s after the only write: alive because reads refreshed it
        time.sleep(1.2)
        assert client.get("/data").json() == {"user": "ann"}


# -- Flask-Login, flash(), session_transaction -----------------------------------------------


def test_flask_login_logout_ends_the_login_and_moves_the_session(
        browser: Callable[..., Browser]) -> None:
    client = browser()
    client.post("/login", name="ann")
    logged_in = client.sid
    assert logged_in and client.get("/whoami").json()["user"] == "ann"
    client.post("/logout")
    assert client.get("/whoami").json()["user"] is None
    assert client.replay(logged_in)["user"] is None  # the logged-in ID is dead


# Flask-Login 0.6.3 dates its remember cookie with datetime.utcnow(), deprecated in 3.12.
@pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning")
def test_flask_login_remember_me_logs_in_again_after_the_browser_closes(
        browser: Callable[..., Browser]) -> None:
    client = browser()
    reply = client.post("/login", name="ann", remember="1")
    assert any(c.startswith("remember_token=") for c in reply.set_cookies())
    before = client.sid
    del client.cookies[COOKIE]  # the browser restarts: session cookies are gone
    assert client.get("/whoami").json()["user"] == "ann"
    assert client.sid and client.sid != before
    client.post("/logout")
    assert "remember_token" not in client.cookies
    assert client.get("/whoami").json()["user"] is None


def test_flash_messages_show_once(browser: Callable[..., Browser]) -> None:
    client = browser()
    client.get("/flash/saved")
    client.get("/flash/again")
    assert client.get("/flashes").json() == ["saved", "again"]
    assert client.get("/flashes").json() == []


def test_session_transaction_reads_and_writes_the_session(closing: Callable[[Flask], Flask],
                                                          ) -> None:
    app = closing(make_app())
    client = app.test_client()
    with client.session_transaction() as sess:
        assert isinstance(sess, FlaskSession) and sess.new
        sess["user"] = "ann"
    assert client.get("/data").json == {"user": "ann"}
    client.get("/put/cart/pears")
    with client.session_transaction() as sess:
        assert dict(sess) == {"user": "ann", "cart": "pears"}
        assert not sess.new


# -- Flask's session attributes ---------------------------------------------------------------


def test_defaults_follow_flask(closing: Callable[[Flask], Flask],
                               browser: Callable[..., Browser]) -> None:
    app = closing(make_app())
    config = app.extensions["websession"].config
    assert config.cookie_name == "session"
    assert config.idle_timeout == 31 * 86400  # PERMANENT_SESSION_LIFETIME
    assert config.absolute_lifetime == 365 * 86400
    set_cookie = browser().get("/put/a/1").session_cookie()
    assert set_cookie
    attrs = attributes(set_cookie)
    assert "max-age" not in attrs and "expires" not in attrs  # a browser-session cookie
    assert attrs["path"] == "/" and attrs["samesite"] == "Lax" and "httponly" in attrs
    assert "secure" not in attrs


def test_permanent_sessions_get_a_cookie_lasting_permanent_session_lifetime(
        browser: Callable[..., Browser]) -> None:
    client = browser(PERMANENT_SESSION_LIFETIME=timedelta(hours=2))
    assert client.get("/state").json()["permanent"] is False
    set_cookie = client.get("/permanent/1").session_cookie()
    assert set_cookie
    assert 7190 <= int(attributes(set_cookie)["max-age"]) <= 7200
    assert client.get("/state").json()["permanent"] is True
    set_cookie = client.get("/permanent/0").session_cookie()
    assert set_cookie and "max-age" not in attributes(set_cookie)
    assert client.get("/state").json()["permanent"] is False


def test_setting_permanent_on_every_request_costs_no_write(
        closing: Callable[[Flask], Flask]) -> None:
    app = closing(make_app())

    @app.before_request
    def always_permanent() -> None:
        session.permanent = True  # the pattern Flask's docs show

    client = Browser(client_send(app))
    client.get("/put/a/1")
    version = client.get("/state").json()["version"]
    for _ in range(3):
        client.get("/data")
    assert client.get("/state").json()["version"] == version


def test_new_modified_and_sid(browser: Callable[..., Browser]) -> None:
    client = browser()
    first = client.get("/state").json()
    assert first["new"] is True and first["modified"] is False
    client.get("/put/a/1")
    state = client.get("/state").json()
    assert state["new"] is False and state["sid"] == client.sid


def test_accessed_sessions_vary_on_cookie_and_untouched_ones_add_nothing() -> None:
    app = Flask("plain")  # no Flask-Login: it touches the session on every request
    manager = Session(app).manager
    assert manager is not None

    @app.get("/put")
    def put() -> ResponseReturnValue:
        session["a"] = 1
        return "ok"

    @app.get("/permanent")
    def permanent() -> ResponseReturnValue:
        return str(session.permanent)  # touching flask.session is an access, as in Flask

    @app.get("/nothing")
    def nothing() -> ResponseReturnValue:
        return "ok"

    try:
        client = Browser(client_send(app))
        client.get("/put")
        assert client.get("/permanent").header("Vary") == "Cookie"
        untouched = client.get("/nothing")
        assert untouched.header("Vary") is None and not untouched.set_cookies()
    finally:
        manager.close()


def test_modified_true_forces_a_save_and_in_place_changes_are_saved(
        closing: Callable[[Flask], Flask]) -> None:
    app = closing(make_app())

    @app.get("/touch")
    def touch() -> ResponseReturnValue:
        session.modified = True
        return "ok"

    client = Browser(client_send(app))
    client.get("/append/apple")
    client.get("/append/pear")
    assert client.get("/data").json() == {"cart": ["apple", "pear"]}
    version = client.get("/state").json()["version"]
    client.get("/touch")
    assert client.get("/state").json()["version"] == version + 1


def test_clear_at_logout_deletes_the_record_and_expires_the_cookie(
        browser: Callable[..., Browser]) -> None:
    client = browser()
    client.get("/put/user/ann")
    sid = client.sid
    assert sid
    set_cookie = client.post("/clear").session_cookie()
    assert set_cookie and attributes(set_cookie)["max-age"] == "0"
    assert client.sid is None
    assert client.replay(sid)["data"] == {}


def test_clear_then_set_at_login_stores_only_the_new_data_under_a_new_id(
        browser: Callable[..., Browser]) -> None:
    client = browser()
    client.get("/put/planted/yes")
    planted = client.sid
    client.post("/flask-login-idiom", name="ann")
    assert client.sid and client.sid != planted
    assert client.get("/data").json() == {"user_id": "ann"}
    assert planted and client.replay(planted)["data"] == {}


def test_invalidate_and_regenerate_id(browser: Callable[..., Browser]) -> None:
    client = browser()
    client.get("/put/user/ann")
    first = client.sid
    client.post("/regenerate")
    second = client.sid
    assert second and second != first
    assert client.get("/data").json() == {"user": "ann"}
    assert first and client.replay(first)["data"] == {}
    client.post("/invalidate")
    assert client.sid and client.sid != second
    assert client.get("/data").json() == {"flash": "bye"}
    assert client.replay(second)["data"] == {}


def test_a_session_emptied_by_a_request_is_deleted_with_its_cookie(
        browser: Callable[..., Browser]) -> None:
    client = browser()
    client.get("/put/only/key")
    sid = client.sid
    set_cookie = client.post("/pop/only").session_cookie()
    assert set_cookie and attributes(set_cookie)["max-age"] == "0"
    assert sid and client.replay(sid)["data"] == {}


def test_flasks_cookie_settings(browser: Callable[..., Browser]) -> None:
    client = browser(SESSION_COOKIE_NAME="sid", SESSION_COOKIE_DOMAIN="example.test",
                     SESSION_COOKIE_PATH="/app", SESSION_COOKIE_HTTPONLY=False,
                     SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Strict")
    set_cookie = client.get("/put/a/1").set_cookies()[0]
    assert set_cookie.startswith("sid=")
    attrs = attributes(set_cookie)
    assert attrs["domain"] == "example.test" and attrs["path"] == "/app"
    assert attrs["samesite"] == "Strict" and "secure" in attrs and "httponly" not in attrs


def test_partitioned_cookies_are_secure(browser: Callable[..., Browser]) -> None:
    client = browser(SESSION_COOKIE_PARTITIONED=True, SESSION_COOKIE_SAMESITE="None")
    attrs = attributes(client.get("/put/a/1").set_cookies()[0])
    assert "partitioned" in attrs and "secure" in attrs and attrs["samesite"] == "None"


def test_application_root_is_the_default_cookie_path(browser: Callable[..., Browser]) -> None:
    client = browser(APPLICATION_ROOT="/shop")
    assert attributes(client.get("/put/a/1").set_cookies()[0])["path"] == "/shop"


@pytest.mark.parametrize("refresh", [True, False])
def test_refresh_each_request_decides_whether_a_read_resends_the_cookie(
        refresh: bool, closing: Callable[[Flask], Flask]) -> None:
    app = closing(make_app(PERMANENT_SESSION_LIFETIME=10,
                           SESSION_REFRESH_EACH_REQUEST=refresh))
    client = Browser(client_send(app))
    client.get("/permanent/1")
    sid = client.sid
    assert sid
    before = app.extensions["websession"].get_session_store(sid).expires_at
    time.sleep(1.1)  # past a tenth of the lifetime: the next read refreshes
    reply = client.get("/data")
    assert (reply.session_cookie() is not None) is refresh
    after = app.extensions["websession"].get_session_store(sid).expires_at
    assert after > before + 1  # the server's deadline slid either way


# -- configuration ---------------------------------------------------------------------------


def test_websession_config_forms(tmp_path: Path, closing: Callable[[Flask], Flask]) -> None:
    path = tmp_path / "s.sqlite3"
    as_json = closing(make_app(Store("sqlite", {}),
                               WEBSESSION_CONFIG=json.dumps({"providerConfig": str(path),
                                                             "sessionIDLength": 20})))
    assert as_json.extensions["websession"].config.session_id_length == 20
    Browser(client_send(as_json)).get("/put/a/1")
    assert path.exists()
    manager = Manager("memory", {"cookieName": "mine"}, session_class=FlaskSession)
    ready = closing(make_app(WEBSESSION_CONFIG=manager))
    assert ready.extensions["websession"] is manager
    client = Browser(client_send(ready))
    assert client.get("/put/a/1").set_cookies()[0].startswith("mine=")
    owned = closing(make_app(WEBSESSION_CONFIG={"absoluteLifetime": 600}))
    assert owned.extensions["websession"].config.absolute_lifetime == 600


@pytest.mark.parametrize(("config", "message"), [
    ({"WEBSESSION_CONFIG": {"cookieName": "x"}}, "use SESSION_COOKIE_NAME"),
    ({"WEBSESSION_CONFIG": '{"MaxLifetime": 60}'}, "use PERMANENT_SESSION_LIFETIME"),
    ({"WEBSESSION_CONFIG": '{"providerConfig": }'}, "line 1, column 20"),
    ({"WEBSESSION_CONFIG": Manager("memory")}, "session_class=websession.flask.FlaskSession"),
    ({"WEBSESSION_CONFIG": 42}, "JSON string, a dict or a Manager"),
    ({"SESSION_COOKIE_SAMESITE": "None"}, "SESSION_COOKIE_SAMESITE"),
    ({"SESSION_COOKIE_NAME": "bad name"}, "SESSION_COOKIE_NAME"),
    ({"PERMANENT_SESSION_LIFETIME": 0}, "PERMANENT_SESSION_LIFETIME"),
])
def test_bad_configuration_names_the_flask_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace(".", r"\.")):
        make_app(**config)


def test_init_app_pattern_and_the_typed_proxy() -> None:
    extension = Session()
    app = Flask("factory")
    manager = extension.init_app(app)
    try:
        assert extension.manager is manager is app.extensions["websession"]
        assert websession.flask.session is flask.session
        assert isinstance(app.session_interface, websession.flask.WebSessionInterface)
    finally:
        manager.close()


def test_importing_without_flask_names_the_extra() -> None:
    code = ("import sys; sys.modules['flask'] = None\n"
            "try:\n    import websession.flask\n"
            "except ImportError as exc:\n    print(type(exc).__name__, exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "PYTHONPATH": "src"}).stdout
    assert out.startswith("MissingDependencyError")
    assert "pip install 'websession[flask]'" in out


# -- outages and async views -----------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis server of this test's own, to crash mid-request; durable, so that a restart
    keeps what was acknowledged."""
    require_redis_binaries()
    server = RedisServer(tmp_path / "redis", free_port(), "--appendonly", "yes",
                         "--appendfsync", "always")
    try:
        yield server.start()
    finally:
        server.stop(kill=True)


def test_a_store_outage_answers_503(private_redis: RedisServer,
                                    closing: Callable[[Flask], Flask]) -> None:
    app = closing(make_app(Store("redis", {"providerConfig": f"{HOST}:{private_redis.port}"})))

    @app.get("/crash-before-save")
    def crash_before_save() -> ResponseReturnValue:
        session.get("user")  # read while the store is up
        private_redis.stop(kill=True)
        session["user"] = "bob"  # saved after the view: the store is gone
        return "not this"

    client = Browser(client_send(app))
    client.get("/put/user/ann")
    reply = client.send("GET", "/crash-before-save", client.cookie_header, None)
    assert reply.status == 503 and b"not this" not in reply.body
    assert not reply.session_cookie()
    reply = client.send("GET", "/data", client.cookie_header, None)  # read fails in the view
    assert reply.status == 503
    private_redis.start()
    assert client.get("/data").json() == {"user": "ann"}


def test_the_applications_own_503_page_is_used(private_redis: RedisServer,
                                               closing: Callable[[Flask], Flask]) -> None:
    app = closing(make_app(Store("redis", {"providerConfig": f"{HOST}:{private_redis.port}"})))

    @app.errorhandler(503)
    def unavailable(error: Exception) -> ResponseReturnValue:
        return "come back soon", 503

    client = Browser(client_send(app))
    client.get("/put/user/ann")
    private_redis.stop(kill=True)
    reply = client.send("GET", "/data", client.cookie_header, None)
    assert (reply.status, reply.body) == (503, b"come back soon")
    reply = client.send("GET", "/put/user/bob", client.cookie_header, None)
    assert (reply.status, reply.body) == (503, b"come back soon")


def test_async_views_use_the_session_without_awaiting(tmp_path: Path,
                                                      closing: Callable[[Flask], Flask],
                                                      ) -> None:
    app = closing(make_app(Store("sqlite", {"providerConfig": str(tmp_path / "a.sqlite3")})))

    @app.get("/async-count")
    async def count() -> ResponseReturnValue:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    @app.get("/async-direct")
    async def direct() -> ResponseReturnValue:
        # A session read outside the request's own (another session, by ID) on the
        # view's event loop is refused with the async twin named.
        other = app.extensions["websession"].get_session_store("0" * 32)
        try:
            other.get("x")
        except SessionModeError as exc:
            return str(exc)
        return "no error"

    client = Browser(client_send(app))
    assert [client.get("/async-count").body for _ in range(3)] == [b"1", b"2", b"3"]
    assert b"await session.aload()" in client.get("/async-direct").body


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Flask\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)  # its SQLite file goes here
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), namespace)
    app: Flask = namespace["app"]
    try:
        client = app.test_client()
        response = client.post("/login", data={"user": "<ann>", "remember": "on"})
        set_cookie = response.headers["Set-Cookie"]
        assert 604790 <= int(attributes(set_cookie)["max-age"]) <= 604800
        page = client.get("/").get_data(as_text=True)
        assert "Welcome!" in page and "Hello &lt;ann&gt;, visit 1." in page
        assert "visit 2." in client.get("/").get_data(as_text=True)
        client.post("/logout")
        assert "Log in" in client.get("/").get_data(as_text=True)
        assert (tmp_path / "sessions.sqlite3").exists()
    finally:
        app.extensions["websession"].close()
