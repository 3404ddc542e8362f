"""A Flask application on websession against the same application on Flask-Session, both
over the Redis on 127.0.0.1:6379 (``--redis`` to change).

``python -m bench.flask_bench [--quick]`` runs, in this process, through Flask's WSGI
application (the whole of Flask: routing, request context, session interface):

* read-modify-write: read a counter from ``flask.session``, increment it, store it;
* read-only: the first request stores a token, every later one only reads it;
* concurrent keys kept: 20 concurrent requests (threads) on one session, each setting its
  own key, then a count of the keys the session kept.

websession's side is ``websession.flask.Session`` over its Redis provider; Flask-Session's
is its ``RedisSessionInterface`` (``SESSION_TYPE = "redis"``) on the same server, each
with its defaults. Goals: at least 1.2x Flask-Session on read-modify-write and 1.5x on
read-only requests. One more row explains the read-only figures without a goal of its
own: Flask-Session with ``SESSION_REFRESH_EACH_REQUEST = False``, which then only reads
(one round trip, as websession) but no longer slides the session's expiry, which
websession does in that same round trip. As in :mod:`bench.runner`, the peers alternate
over several rounds and each verdict is the median of per-round ratios; every round checks
that the session carried its counter or token.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis
from flask import Flask
from flask.typing import ResponseReturnValue

from .client import CookieJar, RoundTripError, check_counter
from .keys_bench import WORK_SECONDS, _kept, wsgi_burst
from .results import Collector
from .runner import (
    Result,
    Settings,
    delete_keys,
    measure,
    package_version,
    print_kept,
    print_settings,
    print_throughput,
    start_store_bench,
    store_parser,
)
from .wsgi import _BASE_ENVIRON

__all__ = ["main"]

GOAL_RMW = 1.2
GOAL_READ_ONLY = 1.5
KEYS_REQUESTS = 20
KEYS_RUNS = 5
QUICK_KEYS_RUNS = 2

FULL = Settings(rounds=9, requests=2_000, warmup=500)
QUICK = Settings(rounds=3, requests=1_000, warmup=300)

WSGIApp = Callable[..., Any]


# -- the application, on either session layer ------------------------------------------------


def _routes(app: Flask) -> None:
    from flask import jsonify, session

    @app.get("/")
    def counter() -> str:
        count: int = session.get("counter", 0) + 1
        session["counter"] = count
        return str(count)

    @app.get("/token")
    def token() -> str:
        value = session.get("token")
        if value is None:
            value = session["token"] = uuid.uuid4().hex
        return str(value)

    @app.get("/start")
    def start() -> str:
        session["start"] = True
        return "ok"

    @app.get("/set/<int:i>")
    def set_key(i: int) -> str:
        session.get("start")  # read first, as a handler does
        time.sleep(WORK_SECONDS)
        session[f"k{i}"] = 1
        return "ok"

    @app.get("/keys")
    def keys() -> ResponseReturnValue:
        return jsonify(sorted(session.keys()))


def websession_app(url: str, prefix: str) -> tuple[WSGIApp, Callable[[], None]]:
    from websession.flask import Session

    app = Flask("bench-websession")
    app.config.update(WEBSESSION_PROVIDER="redis", WEBSESSION_CONFIG={
        "providerConfig": {"save_path": url, "poolsize": 100, "key_prefix": prefix}})
    manager = Session(app).manager
    assert manager is not None
    _routes(app)
    return app.wsgi_app, manager.close


def flask_session_app(url: str, prefix: str, *,
                      refresh_each_request: bool = True) -> tuple[WSGIApp, Callable[[], None]]:
    from flask_session import Session  # type: ignore[import-untyped, unused-ignore]

    client = redis.Redis.from_url(url)
    app = Flask("bench-flask-session")
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client, SESSION_KEY_PREFIX=prefix,
                      SESSION_REFRESH_EACH_REQUEST=refresh_each_request)
    Session(app)
    _routes(app)
    return app.wsgi_app, client.close


# -- the request loops ------------------------------------------------------------------------


def run(app: WSGIApp, path: str, requests: int) -> tuple[float, bytes, bytes]:
    """``requests`` GETs of ``path`` from one client keeping its cookies; the seconds they
    took, and the first and last bodies."""
    jar = CookieJar()
    headers: list[tuple[str, str]] = []

    def start_response(status: str, response_headers: list[tuple[str, str]],
                       exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RoundTripError(f"GET {path} answered {status}")
        headers[:] = response_headers

    first = body = b""
    started = time.perf_counter()
    for _ in range(requests):
        environ = _BASE_ENVIRON.copy()
        environ["PATH_INFO"] = path
        if jar.header:
            environ["HTTP_COOKIE"] = jar.header
        result = app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        first = first or body
        jar.update(value for name, value in headers if name.lower() == "set-cookie")
    return time.perf_counter() - started, first, body


def counter_timer(name: str, app: WSGIApp) -> Callable[[int], float]:
    def timer(requests: int) -> float:
        elapsed, _, last = run(app, "/", requests)
        check_counter(name, last, requests)
        return elapsed

    return timer


def token_timer(name: str, app: WSGIApp) -> Callable[[int], float]:
    def timer(requests: int) -> float:
        elapsed, first, last = run(app, "/token", requests)
        if len(first) != 32 or first != last:
            raise RoundTripError(f"{name}: the session did not survive ({first!r}, {last!r})")
        return elapsed

    return timer


# -- reporting ------------------------------------------------------------------------------

_collector = Collector("flask", "python -m bench.flask_bench", {})

WEBSESSION = "websession.flask (Redis)"
FLASK_SESSION = "Flask-Session (Redis)"
FLASK_SESSION_NO_REFRESH = "Flask-Session (Redis), SESSION_REFRESH_EACH_REQUEST=False"
_ROUND_TRIPS = {
    "rmw": {WEBSESSION: 2, FLASK_SESSION: 2},
    "ro": {WEBSESSION: 1, FLASK_SESSION: 2, FLASK_SESSION_NO_REFRESH: 1},
}


def _report(scenario_id: str, title: str, ours: Result,
            others: Sequence[tuple[Result, float | None]], notes: str) -> bool:
    met = print_throughput(title, ours, others, width=58)
    _collector.throughput(scenario_id, title, ours, others,
                          round_trips=_ROUND_TRIPS["ro" if "read-only" in scenario_id else "rmw"],
                          notes=notes)
    return met


# -- suites -----------------------------------------------------------------------------------


def throughput_suites(url: str, tag: str, settings: Settings) -> bool:
    ours, close_ours = websession_app(url, f"bench:{tag}:ws:")
    theirs, close_theirs = flask_session_app(url, f"bench:{tag}:fs:")
    lazy, close_lazy = flask_session_app(url, f"bench:{tag}:fsl:", refresh_each_request=False)
    notes = ("Flask's whole request cycle in-process, WSGI calls, no network but Redis on "
             "127.0.0.1; each side with its defaults")
    try:
        results = measure([(WEBSESSION, counter_timer(WEBSESSION, ours)),
                           (FLASK_SESSION, counter_timer(FLASK_SESSION, theirs))], settings)
        met = _report("flask-redis-rmw", "Flask on Redis: read-modify-write", results[0],
                      [(results[1], GOAL_RMW)], notes)
        print()
        results = measure([(WEBSESSION, token_timer(WEBSESSION, ours)),
                           (FLASK_SESSION, token_timer(FLASK_SESSION, theirs)),
                           (FLASK_SESSION_NO_REFRESH,
                            token_timer(FLASK_SESSION_NO_REFRESH, lazy))], settings)
        met &= _report("flask-redis-read-only", "Flask on Redis: read-only requests",
                       results[0], [(results[1], GOAL_READ_ONLY), (results[2], None)], notes)
    finally:
        close_ours()
        close_theirs()
        close_lazy()
    return met


def keys_suite(url: str, tag: str, runs: int) -> dict[str, list[int]]:
    """How many of ``KEYS_REQUESTS`` concurrent keys each side keeps, run by run."""
    kept: dict[str, list[int]] = {}
    for name, make in ((WEBSESSION, websession_app), (FLASK_SESSION, flask_session_app)):
        app, close = make(url, f"bench:{tag}:keys:{len(kept)}:")
        try:
            kept[name] = [len(_kept(name, wsgi_burst(app, KEYS_REQUESTS), KEYS_REQUESTS))
                          for _ in range(runs)]
        finally:
            close()
        print_kept(name, kept[name], KEYS_REQUESTS, width=58)
    return kept


# -- entry point --------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    started = start_store_bench(store_parser(
        "python -m bench.flask_bench",
        "A Flask app on websession against Flask-Session, both on a real Redis."),
        argv, FULL, QUICK)
    if started is None:
        return 2
    args, settings, server = started
    v = package_version
    print(f"websession {v('websession')} vs Flask-Session {v('flask-session')} (Flask "
          f"{v('flask')}, redis-py {redis.__version__}, Redis {server})")
    print_settings(settings)
    tag = f"flask{os.getpid()}"
    runs = QUICK_KEYS_RUNS if args.quick else KEYS_RUNS
    _collector.settings = {"rounds": settings.rounds, "requests": settings.requests,
                           "quick": args.quick, "keys_requests": KEYS_REQUESTS,
                           "keys_runs": runs}
    _collector.extra["redis_server"] = server
    try:
        met = throughput_suites(args.redis, tag, settings)
        print(f"\nConcurrent keys kept: {KEYS_REQUESTS} concurrent requests on one session, "
              f"each setting its own key after {WORK_SECONDS * 1000:.0f} ms of work")
        # Kept in "extra", not as a keys_kept scenario: bench.report draws one keys chart,
        # the keys bench's.
        _collector.extra["keys_kept"] = keys_suite(args.redis, tag, runs)
    finally:
        delete_keys(args.redis, f"bench:{tag}:*")
    _collector.write(args.results)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
