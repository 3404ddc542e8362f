"""Django's session engines side by side, in one process, through Django's WSGI handler.

``python -m bench.django_bench`` serves the same Django views (stock ``SessionMiddleware``)
two ways, against the Redis on 127.0.0.1:6379 (``--redis`` to change):

* websession: ``SESSION_ENGINE = "websession.django"`` over its Redis provider;
* Django's cache backend (``django.contrib.sessions.backends.cache``) on Django's built-in
  ``RedisCache``, the same Redis.

Scenarios, requests made in process with a browser-like cookie jar:

* read-modify-write: read a counter, increment it, store it (goal: websession at least
  1.0x Django). Both make two round trips: websession a Lua read and a compare-and-set,
  Django a GET and a SET;
* read-only: read a value set once (goal: at least 1.3x). Django's default makes one
  round trip and never moves the session's expiry on a read; websession makes one round
  trip and its read slides the idle deadline. A third row, Django with
  ``SESSION_SAVE_EVERY_REQUEST = True`` (its way to slide the expiry on reads: a GET and
  a SET), explains the figures and has no goal;
* keys kept: 20 concurrent requests on one session, each setting its own key, against
  websession (Redis), Django's db backend (SQLite) and its cache backend (RedisCache).

Peers alternate over several rounds and each verdict is the median of per-round ratios,
as in :mod:`bench.runner`; every round checks the session survived (the counter reached
the number of requests, the read value never changed).
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import redis

from .client import CookieJar, RoundTripError, check_counter
from .keys_bench import REQUESTS, WORK_SECONDS, wsgi_burst
from .results import Collector
from .runner import (
    Result,
    Settings,
    Timer,
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

GOAL_RMW = 1.0
GOAL_READ = 1.3
RUNS = 5
QUICK_RUNS = 2

FULL = Settings(rounds=9, requests=2_000, warmup=500)
QUICK = Settings(rounds=3, requests=500, warmup=200)

WEBSESSION = "websession.django"
DJANGO_CACHE = "django.contrib.sessions.backends.cache"
DJANGO_DB = "django.contrib.sessions.backends.db"

App = Callable[..., Any]


class _URLs:
    """Django's ROOT_URLCONF: any object with ``urlpatterns`` will do."""

    urlpatterns: ClassVar[list[Any]] = []


def _setup(url: str, tag: str, scratch: Path) -> None:
    import django  # type: ignore[import-untyped, unused-ignore]
    from django.conf import settings  # type: ignore[import-untyped, unused-ignore]
    from django.core.management import (  # type: ignore[import-untyped, unused-ignore]
        call_command,
    )
    from django.http import (  # type: ignore[import-untyped, unused-ignore]
        HttpResponse,
        JsonResponse,
    )
    from django.urls import path  # type: ignore[import-untyped, unused-ignore]

    settings.configure(
        DEBUG=False,
        SECRET_KEY="django-bench-secret-key-0123456789abcdef",
        ALLOWED_HOSTS=["bench.local"],
        INSTALLED_APPS=["django.contrib.sessions"],
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        ROOT_URLCONF=_URLs,
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                               "NAME": str(scratch / "django.sqlite3"),
                               "OPTIONS": {"timeout": 30}}},
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "sessions": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                         "LOCATION": url, "KEY_PREFIX": f"bench:{tag}:django"},
        },
        SESSION_CACHE_ALIAS="sessions",
        WEBSESSION={"provider": "redis", "config": {"providerConfig": {
            "save_path": url, "key_prefix": f"bench:{tag}:ws:"}}},
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    )
    django.setup()

    def counter(request: Any) -> Any:
        count = request.session.get("n", 0) + 1
        request.session["n"] = count
        return HttpResponse(str(count))

    def token_start(request: Any) -> Any:
        request.session["token"] = uuid.uuid4().hex
        return HttpResponse("ok")

    def token(request: Any) -> Any:
        return HttpResponse(request.session["token"])

    def start(request: Any) -> Any:
        request.session["start"] = True
        return HttpResponse("ok")

    def set_key(request: Any, i: int) -> Any:
        request.session.get("start")
        time.sleep(WORK_SECONDS)
        request.session[f"k{i}"] = 1
        return HttpResponse("ok")

    def keys(request: Any) -> Any:
        return JsonResponse(sorted(request.session.keys()), safe=False)

    _URLs.urlpatterns = [path("counter", counter), path("token/start", token_start),
                         path("token", token), path("start", start),
                         path("set/<int:i>", set_key), path("keys", keys)]
    call_command("migrate", verbosity=0, skip_checks=True, interactive=False)


def _handler(engine: str) -> App:
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler  # type: ignore[import-untyped, unused-ignore]

    # SessionMiddleware picks its engine when the handler loads its middleware.
    settings.SESSION_ENGINE = engine
    return WSGIHandler()  # type: ignore[no-any-return, unused-ignore]


def _call(app: App, path: str, jar: CookieJar) -> bytes:
    environ = _BASE_ENVIRON.copy()
    environ["PATH_INFO"] = path
    environ["wsgi.input"] = io.BytesIO(b"")
    if jar.header:
        environ["HTTP_COOKIE"] = jar.header
    cookies: list[str] = []
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        status.append(s)
        cookies.extend(v for k, v in headers if k.lower() == "set-cookie")

    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    if not status[0].startswith("200"):
        raise RoundTripError(f"GET {path} answered {status[0]}: {body[:200]!r}")
    if cookies:
        jar.update(cookies)
    return body


def _every_request(save: bool, run: Timer) -> Timer:
    """``run`` with ``SESSION_SAVE_EVERY_REQUEST`` set to ``save`` (read per request)."""
    from django.conf import settings

    def timed(requests: int) -> float:
        settings.SESSION_SAVE_EVERY_REQUEST = save
        try:
            return run(requests)
        finally:
            settings.SESSION_SAVE_EVERY_REQUEST = False

    return timed


def _rmw(name: str, app: App) -> Timer:
    def run(requests: int) -> float:
        jar = CookieJar()  # a new session each round: the counter starts at 0
        body = b""
        started = time.perf_counter()
        for _ in range(requests):
            body = _call(app, "/counter", jar)
        elapsed = time.perf_counter() - started
        check_counter(name, body, requests)
        return elapsed

    return run


def _read_only(name: str, app: App) -> Timer:
    def run(requests: int) -> float:
        jar = CookieJar()
        _call(app, "/token/start", jar)
        first = _call(app, "/token", jar)
        last = first
        started = time.perf_counter()
        for _ in range(requests):
            last = _call(app, "/token", jar)
        elapsed = time.perf_counter() - started
        if len(first) != 32 or last != first:
            raise RoundTripError(f"{name}: the session did not survive ({first!r}, {last!r})")
        return elapsed

    return run


# -- reporting ------------------------------------------------------------------------------

_collector = Collector("django", "python -m bench.django_bench", {})

#: Store round trips per request, where the bench knows them.
_ROUND_TRIPS = {
    "websession.django (Redis)": 2,
    "Django cache backend (RedisCache)": 2,
    "websession.django (Redis): 1 round trip": 1,
    "Django cache backend (RedisCache): 1 round trip, expiry never slides": 1,
    "Django cache backend, SESSION_SAVE_EVERY_REQUEST: 2 round trips": 2,
}


def _report(scenario_id: str, title: str, ours: Result,
            others: Sequence[tuple[Result, float | None]], notes: str) -> bool:
    met = print_throughput(title, ours, others, width=66)
    _collector.throughput(scenario_id, title, ours, others, round_trips=_ROUND_TRIPS,
                          notes=notes)
    return met


# -- suites ---------------------------------------------------------------------------------


def _throughput(ours: App, theirs: App, settings: Settings) -> bool:
    results = measure([
        ("websession.django (Redis)", _rmw("websession", ours)),
        ("Django cache backend (RedisCache)", _rmw("Django cache", theirs)),
    ], settings)
    met = _report("django-rmw", "Django read-modify-write, WSGI handler, Redis", results[0],
                  [(results[1], GOAL_RMW)],
                  "Django's WSGI handler and stock SessionMiddleware in process; the Redis "
                  "server on 127.0.0.1 for both")
    print()
    results = measure([
        ("websession.django (Redis): 1 round trip", _read_only("websession", ours)),
        ("Django cache backend (RedisCache): 1 round trip, expiry never slides",
         _read_only("Django cache", theirs)),
        ("Django cache backend, SESSION_SAVE_EVERY_REQUEST: 2 round trips",
         _every_request(True, _read_only("Django cache, save every request", theirs))),
    ], settings)
    met &= _report("django-read-only", "Django read-only requests, WSGI handler, Redis",
                   results[0], [(results[1], GOAL_READ), (results[2], None)],
                   "websession's read also slides the idle deadline; Django's default read "
                   "does not, and SESSION_SAVE_EVERY_REQUEST is Django's way to make it")
    return met


def _keys(peers: Sequence[tuple[str, str, App]], runs: int) -> None:
    print(f"\nKeys kept: {REQUESTS} concurrent requests on one session, each setting its own "
          f"key after {WORK_SECONDS * 1000:.0f} ms of work; {runs} bursts each")
    rows = []
    for library, store, app in peers:
        counts = []
        for _ in range(runs):
            keys = wsgi_burst(app, REQUESTS)
            if "start" not in keys:
                raise RoundTripError(f"{library} ({store}): the session itself was lost")
            counts.append(sum(1 for k in keys if k[:1] == "k" and k[1:].isdigit()))
        name = f"{library} (Django, {store})"
        print_kept(name, counts, REQUESTS, width=58)
        rows.append({"name": name, "library": library, "framework": "Django", "store": store,
                     "ours": library == "websession", "kept": counts})
    _collector.keys_kept(
        "django-keys-kept", f"Django: {REQUESTS} concurrent requests on one session, each "
        "setting its own key", REQUESTS, rows,
        notes="Django's WSGI handler in process, a thread per request; the client keeps "
              "the last cookie it receives")


def main(argv: Sequence[str] | None = None) -> int:
    parser = store_parser(
        "python -m bench.django_bench",
        "websession as Django's session engine against Django's cache backend on "
        "RedisCache (same Redis), and concurrent keys kept against Django's db and cache "
        "backends.")
    parser.add_argument("--runs", type=int, help=f"keys-kept bursts per peer (default {RUNS})")
    started = start_store_bench(parser, argv, FULL, QUICK)
    if started is None:
        return 2
    args, settings, server = started
    runs = args.runs or (QUICK_RUNS if args.quick else RUNS)
    v = package_version
    print(f"websession {v('websession')} vs Django {v('django')} (redis-py "
          f"{redis.__version__}, Redis {server})")
    print_settings(settings)
    _collector.settings = {"rounds": settings.rounds, "requests": settings.requests,
                           "runs": runs, "quick": args.quick}
    _collector.extra["redis_server"] = server
    tag = f"{os.getpid()}"
    from websession.django import close_manager

    with tempfile.TemporaryDirectory(prefix="django-bench-") as scratch:
        try:
            _setup(args.redis, tag, Path(scratch))
            ours, cache, db = _handler(WEBSESSION), _handler(DJANGO_CACHE), _handler(DJANGO_DB)
            met = _throughput(ours, cache, settings)
            _keys([("websession", "Redis", ours), ("Django", "db on SQLite", db),
                   ("Django", "cache on RedisCache", cache)], runs)
        finally:
            close_manager()
            delete_keys(args.redis, f"bench:{tag}:*")
    _collector.write(args.results)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
