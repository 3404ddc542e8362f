"""aiohttp + websession against aiohttp + aiohttp-session, both on the same Redis.

``python -m bench.aiohttp_bench`` serves two aiohttp applications in this process, each
through aiohttp's own ``TestServer`` (a real socket on 127.0.0.1) and ``TestClient``:
one with :mod:`websession.aiohttp` over :class:`~websession.providers.redis.RedisProvider`
(its redis.asyncio twins), one with aiohttp-session's ``RedisStorage`` over a
``redis.asyncio`` client. Both keep the session in the Redis on 127.0.0.1:6379
(``--redis`` to change), with an hour of idle lifetime and the same cookie name.

* Read-only requests: the first request stores a random token, every timed one reads it
  back. Goal: websession at least 1.5x aiohttp-session's requests per second.
* Read-modify-write requests: a counter read, incremented and stored. Goal: 1.2x.
* 64 concurrent clients, each with a session of its own, doing read-modify-write:
  requests per second and p50/p99 latency. Goal: websession's p99 no worse.
* Keys kept: N concurrent requests on one session, each setting its own key after a
  short wait (a database call, say); how many keys does the session keep?

Peers alternate over several rounds and each verdict is the median of per-round ratios,
as in :mod:`bench.runner`. Every round checks that the session survived (the token came
back, the counter reached the number of requests), so a broken peer cannot pass for fast.
The HTTP stack (aiohttp's client and server, on one event loop) costs the same for both
and most of each request: the ratios are those of whole requests, not of the session
layers alone.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer

import websession
from websession.aiohttp import Session
from websession.aiohttp import get_session as ws_get_session
from websession.aiohttp import setup as ws_setup
from websession.providers.redis import RedisProvider

from .client import CookieJar, RoundTripError, check_counter
from .results import Collector
from .runner import (
    Result,
    Settings,
    alternate,
    count_kept,
    delete_keys,
    measure,
    package_version,
    paired_ratio,
    print_latencies,
    print_settings,
    print_throughput,
    start_store_bench,
    store_parser,
)

__all__ = ["main"]

GOAL_READ_ONLY = 1.5
GOAL_READ_MODIFY_WRITE = 1.2
CONCURRENCY = 64
KEYS_REQUESTS = 30
KEYS_RUNS = 5
QUICK_KEYS_RUNS = 2
#: A keys-kept handler's work between reading the session and setting its key.
WORK_SECONDS = 0.02
COOKIE = "AIOHTTP_SESSION"
MAX_AGE = 3600

FULL = Settings(rounds=9, requests=1_500, warmup=300)
QUICK = Settings(rounds=3, requests=500, warmup=100)

Client = TestClient[web.Request, web.Application]

# -- the two applications -----------------------------------------------------------------
#
# The same four handlers, written once over a "get the session" function: websession's
# and aiohttp-session's sessions are both mappings.

GetSession = Callable[[web.Request], Awaitable[Any]]


def _routes(get_session: GetSession) -> web.RouteTableDef:
    routes = web.RouteTableDef()

    @routes.get("/token")
    async def token(request: web.Request) -> web.Response:
        session = await get_session(request)
        value = session.get("token")
        if value is None:
            value = session["token"] = uuid.uuid4().hex
        return web.Response(text=value)

    @routes.get("/counter")
    async def counter(request: web.Request) -> web.Response:
        session = await get_session(request)
        count = session.get("counter", 0) + 1
        session["counter"] = count
        return web.Response(text=str(count))

    @routes.get("/start")
    async def start(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["start"] = True
        return web.Response(text="ok")

    @routes.get("/set/{i}")
    async def set_key(request: web.Request) -> web.Response:
        session = await get_session(request)
        session.get("start")  # read first, as a handler does
        await asyncio.sleep(WORK_SECONDS)
        session[f"k{int(request.match_info['i'])}"] = 1
        return web.Response(text="ok")

    @routes.get("/keys")
    async def keys(request: web.Request) -> web.Response:
        session = await get_session(request)
        return web.json_response(sorted(session.keys()))

    return routes


def websession_app(url: str, prefix: str) -> tuple[web.Application, websession.Manager]:
    manager = websession.Manager(
        RedisProvider(url, key_prefix=prefix),
        {"cookieName": COOKIE, "gclifetime": MAX_AGE},
        session_class=Session,
    )
    app = web.Application()
    ws_setup(app, manager)
    app.add_routes(_routes(ws_get_session))
    return app, manager


def aiohttp_session_app(client: aredis.Redis, prefix: str) -> web.Application:
    from aiohttp_session import get_session, setup
    from aiohttp_session.redis_storage import RedisStorage

    app = web.Application()
    setup(app, RedisStorage(client, cookie_name=COOKIE, max_age=MAX_AGE,
                            key_factory=lambda: f"{prefix}{uuid.uuid4().hex}"))
    app.add_routes(_routes(get_session))
    return app


def bare_app() -> web.Application:
    """The same requests with no session layer and no store: a dict in this process
    keyed by the client's cookie. The ceiling any session layer over a store can reach."""
    counters: dict[str, int] = {}
    token = uuid.uuid4().hex

    async def get_token(request: web.Request) -> web.Response:
        return web.Response(text=token)

    async def counter(request: web.Request) -> web.Response:
        key = request.headers.get("Cookie")
        response = web.Response()
        if key is None:
            key = f"bare={uuid.uuid4().hex}"
            response.headers["Set-Cookie"] = f"{key}; Path=/; HttpOnly"
        count = counters[key] = counters.get(key, 0) + 1
        response.text = str(count)
        return response

    app = web.Application()
    app.router.add_get("/token", get_token)
    app.router.add_get("/counter", counter)
    return app


@dataclass
class Peer:
    name: str
    client: Client


async def _open(app: web.Application) -> Client:
    # The cookie jar is ours (bench.client's, a browser's for one site): aiohttp's would
    # refuse cookies from an IP address, and a shared one would mix the clients.
    client: Client = TestClient(TestServer(app, host="127.0.0.1"), cookie_jar=DummyCookieJar())
    await client.start_server()
    return client


async def _call(client: Client, path: str, jar: CookieJar) -> bytes:
    headers = {"Cookie": jar.header} if jar.header else None
    async with client.get(path, headers=headers) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RoundTripError(f"GET {path} answered {resp.status}: {body[:200]!r}")
        set_cookies = resp.headers.getall("Set-Cookie", ())
        if set_cookies:
            jar.update(set_cookies)
        return body


# -- sequential requests ------------------------------------------------------------------


async def _read_only(peer: Peer, requests: int) -> float:
    jar = CookieJar()
    first = await _call(peer.client, "/token", jar)  # stores the token: not timed
    body = b""
    started = time.perf_counter()
    for _ in range(requests):
        body = await _call(peer.client, "/token", jar)
    elapsed = time.perf_counter() - started
    if len(first) != 32 or body != first:
        raise RoundTripError(f"{peer.name}: the session did not survive ({first!r}, {body!r})")
    return elapsed


async def _read_modify_write(peer: Peer, requests: int) -> float:
    jar = CookieJar()
    body = b""
    started = time.perf_counter()
    for _ in range(requests):
        body = await _call(peer.client, "/counter", jar)
    elapsed = time.perf_counter() - started
    check_counter(peer.name, body, requests)
    return elapsed


_collector = Collector("aiohttp", "python -m bench.aiohttp_bench", {})


def _report(scenario_id: str, title: str, ours: Result, theirs: Result, bare: Result,
            goal: float) -> bool:
    met = print_throughput(title, ours, [(theirs, goal), (bare, None)], width=48)
    print(f"  the ceiling: no session layer at all is {paired_ratio(bare, theirs):.2f}x "
          f"aiohttp-session, {paired_ratio(bare, ours):.2f}x websession")
    trips = 1 if "read-only" in scenario_id else 2
    _collector.throughput(scenario_id, f"aiohttp: {title}", ours, [(theirs, goal), (bare, None)],
                          round_trips={ours.name: trips, theirs.name: trips, bare.name: 0},
                          notes="aiohttp's TestServer and TestClient in one process, over "
                                "127.0.0.1; both session layers on the same Redis; the row "
                                "without a session layer has no goal: it is the ceiling")
    return met


# -- concurrency --------------------------------------------------------------------------


async def _timed_client(client: Client, requests: int, latencies: list[float]) -> None:
    """One browser sending ``requests`` read-modify-write requests in a row."""
    jar = CookieJar()
    body = b""
    for _ in range(requests):
        started = time.perf_counter()
        body = await _call(client, "/counter", jar)
        latencies.append(time.perf_counter() - started)
    check_counter("concurrent client", body, requests)


async def _concurrently(client: Client, clients: int,
                        requests: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    started = time.perf_counter()
    await asyncio.gather(*(_timed_client(client, requests, latencies) for _ in range(clients)))
    return requests * clients / (time.perf_counter() - started), latencies


def _concurrency_suite(peers: Sequence[Peer], settings: Settings,
                       runner: asyncio.Runner) -> bool:
    per_client = max(10, settings.requests // CONCURRENCY * 2)
    rounds = max(3, settings.rounds // 2)
    for peer in peers:  # warm-up: connections opened, scripts loaded
        runner.run(_concurrently(peer.client, CONCURRENCY, 3))

    def clients(peer: Peer) -> Callable[[], tuple[float, list[float]]]:
        return lambda: runner.run(_concurrently(peer.client, CONCURRENCY, per_client))

    rows = alternate([(peer.name, clients(peer)) for peer in peers], rounds)
    print(f"{CONCURRENCY} concurrent clients, read-modify-write ({per_client} requests each, "
          f"{rounds} rounds)")
    summary = print_latencies(rows, width=44)
    p99s = [float(row["p99_ms"]) for row in summary]
    ratio = statistics.median(o / t for (o, _), (t, _) in zip(
        rows[peers[0].name], rows[peers[1].name], strict=True))
    met = p99s[0] <= p99s[1]
    print(f"  websession/aiohttp-session {ratio:.2f}x throughput; p99 "
          f"{p99s[0] / p99s[1]:.2f}x theirs (goal: no worse)"
          f"{'' if met else '  BELOW GOAL'}")
    _collector.latency("aiohttp-concurrency",
                       f"aiohttp: {CONCURRENCY} concurrent clients, read-modify-write",
                       summary, notes=f"{per_client} requests per client, per round; each "
                                      "client has a session of its own")
    return met


# -- keys kept ----------------------------------------------------------------------------


async def _keys_burst(client: Client, requests: int) -> int:
    jar = CookieJar()  # one browser: the last response's cookie wins
    await _call(client, "/start", jar)
    await asyncio.gather(*(_call(client, f"/set/{i}", jar) for i in range(requests)))
    keys: list[str] = json.loads(await _call(client, "/keys", jar))
    if "start" not in keys:
        raise RoundTripError(f"the session itself was lost ({keys!r})")
    return sum(1 for k in keys if k.startswith("k"))


def _keys_suite(peers: Sequence[Peer], runs: int, runner: asyncio.Runner) -> None:
    print(f"Keys kept: {KEYS_REQUESTS} concurrent requests on one session, each setting its "
          f"own key after {WORK_SECONDS * 1000:.0f} ms of work; {runs} bursts each")

    def burst(peer: Peer) -> Callable[[], int]:
        return lambda: runner.run(_keys_burst(peer.client, KEYS_REQUESTS))

    count_kept([(peer.name, burst(peer)) for peer in peers], runs, KEYS_REQUESTS, _collector)


# -- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    started = start_store_bench(store_parser(
        "python -m bench.aiohttp_bench",
        "aiohttp + websession against aiohttp + aiohttp-session's RedisStorage, on one "
        "Redis."), argv, FULL, QUICK)
    if started is None:
        return 2
    args, settings, server = started
    # aiohttp-session keeps its state under plain string keys, which aiohttp 3.14 warns
    # about once per key; the warning is not what is measured.
    warnings.filterwarnings("ignore", category=web.NotAppKeyWarning)
    v = package_version
    print(f"websession {v('websession')} vs aiohttp-session {v('aiohttp-session')} "
          f"(aiohttp {v('aiohttp')}, redis-py {v('redis')}, Redis {server})")
    print_settings(settings)
    _collector.settings = {"rounds": settings.rounds, "requests": settings.requests,
                           "quick": args.quick, "concurrency": CONCURRENCY}
    _collector.extra["redis_server"] = server
    prefix = f"bench:aiohttp:{os.getpid()}:"
    met = True
    with asyncio.Runner() as runner:
        app, manager = websession_app(args.redis, f"{prefix}ws:")
        # The same pool size as websession's Redis provider (poolsize 100).
        theirs_client = aredis.Redis.from_url(args.redis, max_connections=100)
        peers = [
            Peer("websession (websession.aiohttp, Redis)", runner.run(_open(app))),
            Peer("aiohttp-session (RedisStorage)", runner.run(_open(
                aiohttp_session_app(theirs_client, f"{prefix}aio:")))),
        ]
        bare = Peer("aiohttp alone (no session layer, no store)", runner.run(_open(bare_app())))
        try:
            for scenario_id, title, loop, goal in (
                ("aiohttp-read-only", "Read-only requests", _read_only, GOAL_READ_ONLY),
                ("aiohttp-read-modify-write", "Read-modify-write requests",
                 _read_modify_write, GOAL_READ_MODIFY_WRITE),
            ):
                def timer(peer: Peer, loop: Any = loop) -> Callable[[int], float]:
                    return lambda n: runner.run(loop(peer, n))

                ours, theirs, alone = measure([(p.name, timer(p)) for p in (*peers, bare)],
                                              settings)
                met &= _report(scenario_id, title, ours, theirs, alone, goal)
                print()
            met &= _concurrency_suite(peers, settings, runner)
            print()
            _keys_suite(peers, QUICK_KEYS_RUNS if args.quick else KEYS_RUNS, runner)
        finally:
            for peer in (*peers, bare):
                runner.run(peer.client.close())
            runner.run(theirs_client.aclose())
            runner.run(manager.aclose())
            delete_keys(args.redis, f"{prefix}*", f"{COOKIE}_{prefix}*")
    _collector.write(args.results)
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
