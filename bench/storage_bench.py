"""Storage benchmarks: websession's file, memcached, cookie and SQLite providers against
their peers.

``python -m bench.storage_bench`` runs the read-modify-write loop of ``python -m bench``
(the in-process clients of :mod:`bench.wsgi` and :mod:`bench.asgi`: send back the
previous response's cookie, increment a counter in the session) over stores that persist
or travel, with peers alternating over paired rounds and the verdict the median of the
per-round ratios:

* file: websession's file provider against Beaker's file backend (goal >= 2x). Beaker
  writes a temporary file and renames it over the session file; websession rewrites the
  older of two checksummed slots in place (no rename). Beaker never fsyncs, so the
  headline runs websession with ``fsync`` off; with ``fsync`` on (its default) it is
  shown for information. Each file round starts after an untimed ``os.sync()``, so no
  peer pays for the writeback of another's dirty pages;
* memcached: websession's memcached provider (pymemcache; ``gets`` then ``cas``) against
  Beaker's ``ext:memcached`` backend (python-memcached; ``get`` then ``set``) on the
  memcached at ``--memcached`` (goal >= 1.5x); skipped, saying so, if none answers there;
* cookie: websession's cookie provider, which encrypts (AES-256-GCM), against Starlette's
  signed cookie session over ASGI and Beaker's cookie session over WSGI (goal >= 1x);
* sqlite: websession's SQLite provider, requests per second (no peer);
* gc: one GC pass over 1,000, 10,000 and 100,000 expired sessions next to 1,000 live ones,
  for the memory, file and SQLite providers; it must remove exactly the expired ones.

Every loop checks that its counter reached the number of requests, so a broken cookie
round trip cannot pass for a fast one.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import platform
import secrets
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import websession

from . import asgi, wsgi
from .results import Collector, add_argument
from .runner import Result, Settings, Timer, measure, package_version, profile_run

__all__ = ["GCResult", "main", "run_gc"]

#: The secret every cookie peer signs or encrypts with (32+ characters).
SECURITY_KEY = "storage-bench-security-key-0123456789abcdef"
#: Beaker derives its encryption key from a second secret.
BEAKER_ENCRYPT_KEY = "storage-bench-encryption-key-fedcba9876543210"
#: Goals: websession against Beaker's file backend, and against signed cookie sessions.
FILE_GOAL = 2.0
COOKIE_GOAL = 1.0
#: Goal: websession's memcached provider against Beaker's ext:memcached.
MEMCACHED_GOAL = 1.5
#: The GC benchmark's expired sessions are written with this much life left, then waited out.
EXPIRE_AFTER = 2.0


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each suite does: timed rounds, requests per round, sessions for GC."""

    rounds: int
    file_requests: int
    memcached_requests: int
    cookie_requests: int
    sqlite_requests: int
    gc_expired: tuple[int, ...]
    gc_live: int

    def settings(self, requests: int) -> Settings:
        return Settings(rounds=self.rounds, requests=requests, warmup=max(1, requests // 4))


FULL = Sizes(
    rounds=15,
    file_requests=1_500,
    memcached_requests=3_000,
    cookie_requests=5_000,
    sqlite_requests=5_000,
    gc_expired=(1_000, 10_000, 100_000),
    gc_live=1_000,
)
QUICK = Sizes(
    rounds=3,
    file_requests=300,
    memcached_requests=600,
    cookie_requests=1_000,
    sqlite_requests=1_000,
    gc_expired=(1_000, 10_000),
    gc_live=1_000,
)

# -- peers ----------------------------------------------------------------------------


def _websession_wsgi(name: str, manager: websession.Manager) -> wsgi.WSGIPeer:
    app = websession.WSGISessionMiddleware(
        wsgi.counter_app("websession.session", save=False), manager
    )
    return wsgi.WSGIPeer(name, app, manager.close)


def _beaker_wsgi(name: str, options: dict[str, str]) -> wsgi.WSGIPeer:
    from beaker.middleware import SessionMiddleware  # type: ignore[import-untyped]

    return wsgi.WSGIPeer(
        name, SessionMiddleware(wsgi.counter_app("beaker.session", save=True), options)
    )


def websession_file_peer(directory: Path, *, fsync: bool) -> wsgi.WSGIPeer:
    manager = websession.Manager(
        "file", {"ProviderConfig": {"path": str(directory), "fsync": fsync}}
    )
    return _websession_wsgi("websession" if not fsync else "websession+fsync", manager)


def beaker_file_peer(directory: Path) -> wsgi.WSGIPeer:
    return _beaker_wsgi(
        "beaker",
        {
            "session.type": "file",
            "session.data_dir": str(directory / "data"),
            "session.lock_dir": str(directory / "lock"),
        },
    )


def _cookie_manager() -> websession.Manager:
    return websession.Manager("cookie", {"ProviderConfig": {"securityKey": SECURITY_KEY}})


def beaker_cookie_peers() -> tuple[list[wsgi.WSGIPeer], str]:
    """Beaker's cookie session, encrypted if Beaker has an AES backend, and signed-only.

    Returns the peers (the secure one first) and a description of the secure setup.
    """
    from beaker.crypto import get_crypto_module  # type: ignore[import-untyped]

    signed = {"session.type": "cookie", "session.validate_key": SECURITY_KEY}
    backend = get_crypto_module("default")
    if not getattr(backend, "has_aes", False):
        return [_beaker_wsgi("beaker", signed)], (
            "validate_key only (HMAC-SHA1 signed, NOT encrypted: Beaker found no AES "
            "backend; install cryptography or pycryptodome), pickle serializer"
        )
    encrypted = {**signed, "session.encrypt_key": BEAKER_ENCRYPT_KEY}
    module = backend.__name__.rsplit(".", 1)[-1]
    return [_beaker_wsgi("beaker", encrypted), _beaker_wsgi("beaker-signed", signed)], (
        f"encrypt_key + validate_key: AES-256-GCM ({module}) under a per-cookie key "
        "(PBKDF2-SHA1, 1 iteration), then HMAC-SHA1 signed; pickle serializer (Beaker's "
        "default)"
    )


def starlette_cookie_peer() -> asgi.ASGIPeer:
    from starlette.middleware.sessions import SessionMiddleware

    return asgi.ASGIPeer("starlette", SessionMiddleware(asgi.counter_app, secret_key=SECURITY_KEY))


# -- reporting ------------------------------------------------------------------------


def _report(suite: str, ours: Result, peer: Result, goal: float | None) -> bool:
    """Print one comparison; return whether it met ``goal`` (always, without a goal).

    The caller records the scenario (several comparisons may share one)."""
    # As in bench.runner: the median of per-round ratios, because both peers of a round
    # ran back to back, so a noisy moment on a shared machine mostly cancels out.
    paired = statistics.median(o / p for o, p in zip(ours.rates, peer.rates, strict=True))
    met = goal is None or paired >= goal
    verdict = "info, no goal" if goal is None else f"goal >= {goal:g}x"
    print(
        f"{suite:<11} {ours.name} {ours.median:>9,.0f} req/s  {peer.name} "
        f"{peer.median:>9,.0f} req/s  ratio {paired:.2f}x (median of {len(ours.rates)} "
        f"paired rounds; {verdict}){'' if met else '  BELOW GOAL'}"
    )
    print(
        f"{'':<11} best rounds: {ours.best:,.0f} vs {peer.best:,.0f} req/s "
        f"({ours.best / peer.best:.2f}x); medians {ours.median / peer.median:.2f}x"
    )
    return met


def _compare(collector: Collector, key: str, title: str, ours: Result, peer: Result,
             goal: float | None, notes: str) -> bool:
    """Print one comparison and record it as scenario ``key``; whether it met ``goal``."""
    met = _report(key.replace("-", " "), ours, peer, goal)
    collector.throughput(key, title, ours, [(peer, goal)], notes=notes)
    return met


def _filesystem(path: str) -> str:
    """The type of the filesystem that holds ``path`` (from /proc/mounts; "?" elsewhere)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mount = fields[1]
                inside = path == mount or path.startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    except OSError:
        pass
    return kind


# -- request-loop suites --------------------------------------------------------------


def _synced(timer: Timer) -> Timer:
    """``timer`` after an untimed ``os.sync()``: a round starts with no dirty pages left by
    the previous one, whose writeback would otherwise slow whichever peer runs next."""

    def run(requests: int) -> float:
        os.sync()
        return timer(requests)

    return run


def _profile_wsgi(peer: wsgi.WSGIPeer, requests: int, what: str) -> None:
    profile_run(partial(wsgi.run_wsgi, peer, requests), f"{what}, {requests:,} requests")


def _wsgi_measure(
    peers: Sequence[wsgi.WSGIPeer], settings: Settings, *, sync: bool = False
) -> list[Result]:
    timers: list[tuple[str, Timer]] = []
    for p in peers:
        timer: Timer = partial(wsgi.run_wsgi, p)
        timers.append((p.name, _synced(timer) if sync else timer))
    return measure(timers, settings)


def file_suite(directory: Path, sizes: Sizes, *, profile: bool, collector: Collector) -> bool:
    settings = sizes.settings(sizes.file_requests)
    peers = [
        websession_file_peer(directory / "websession", fsync=False),
        beaker_file_peer(directory / "beaker"),
        websession_file_peer(directory / "websession-fsync", fsync=True),
    ]
    print(
        f"\nfile: WSGI, {settings.rounds} rounds x {settings.requests:,} requests; Beaker "
        "writes a temporary file and renames it over the session file, websession rewrites "
        "one of two checksummed slots in place; Beaker never fsyncs; os.sync() before each "
        "round, untimed"
    )
    try:
        ours, beaker = _wsgi_measure(peers[:2], settings, sync=True)
        filesystem = _filesystem(str(directory))
        met = _compare(
            collector, "file", f"File store, WSGI ({filesystem})", ours, beaker, FILE_GOAL,
            notes="websession with fsync off, as Beaker never fsyncs; os.sync() before "
                  "each round, untimed")
        # Separately: its fsyncs force journal commits that would slow the peers' rounds.
        fsync_settings = dataclasses.replace(settings, rounds=min(5, settings.rounds))
        fsynced, beaker = _wsgi_measure(peers[1:][::-1], fsync_settings, sync=True)
        _compare(
            collector, "file-fsync", f"File store with fsync on (websession's default), "
            f"WSGI ({filesystem})", fsynced, beaker, None,
            notes="for information: Beaker never fsyncs, so this is not like for like")
        if profile:
            _profile_wsgi(peers[0], settings.requests, "file websession (fsync off)")
    finally:
        for p in peers:
            p.close()
    return met


def _listening(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def memcached_suite(address: str, sizes: Sizes, *, profile: bool,
                    collector: Collector) -> bool:
    """websession's memcached provider against Beaker's ext:memcached, WSGI."""
    if not _listening(address):
        print(f"\nmemcached: nothing answers at {address}: suite skipped "
              "(`make services` starts one)")
        return True
    settings = sizes.settings(sizes.memcached_requests)
    tag = secrets.token_hex(4)
    manager = websession.Manager("memcached", {"ProviderConfig": {
        "servers": address, "keyPrefix": f"bench:{tag}:"}})
    peers = [
        _websession_wsgi("websession", manager),
        _beaker_wsgi("beaker", {
            "session.type": "ext:memcached", "session.url": address,
            "session.memcache_module": "memcache", "session.timeout": "3600",
        }),
    ]
    print(
        f"\nmemcached: WSGI, {settings.rounds} rounds x {settings.requests:,} requests on "
        f"{address}; websession: pymemcache, gets + cas (compare-and-set); Beaker: "
        "ext:memcached over python-memcached, get + set"
    )
    try:
        ours, beaker = _wsgi_measure(peers, settings)
        met = _compare(
            collector, "memcached", "memcached store, WSGI", ours, beaker, MEMCACHED_GOAL,
            notes="websession: pymemcache, gets + cas; Beaker: ext:memcached, "
                  "python-memcached, get + set")
        if profile:
            _profile_wsgi(peers[0], settings.requests, "memcached websession")
    finally:
        for p in peers:
            p.close()
    return met


def cookie_wsgi_suite(sizes: Sizes, *, profile: bool, collector: Collector) -> bool:
    settings = sizes.settings(sizes.cookie_requests)
    beakers, setup = beaker_cookie_peers()
    peers = [_websession_wsgi("websession", _cookie_manager()), *beakers]
    print(
        f"\ncookie (WSGI): {settings.rounds} rounds x {settings.requests:,} requests; "
        "websession: AES-256-GCM sealed cookie (HKDF-SHA256 key)"
    )
    print(f"  beaker: {setup}")
    try:
        ours, *others = _wsgi_measure(peers, settings)
        met = _report("cookie wsgi", ours, others[0], COOKIE_GOAL)
        for other in others[1:]:
            _report("cookie wsgi", ours, other, None)
        collector.throughput(
            "cookie-wsgi", "Cookie sessions, WSGI", ours,
            [(others[0], COOKIE_GOAL), *((other, None) for other in others[1:])],
            notes=f"websession: AES-256-GCM sealed; beaker: {setup}")
        if profile:
            _profile_wsgi(peers[0], settings.requests, "cookie wsgi websession")
    finally:
        for p in peers:
            p.close()
    return met


def cookie_asgi_suite(sizes: Sizes, *, profile: bool, collector: Collector) -> bool:
    settings = sizes.settings(sizes.cookie_requests)
    print(
        f"\ncookie (ASGI): {settings.rounds} rounds x {settings.requests:,} requests; "
        "starlette: SessionMiddleware, signed (itsdangerous, HMAC-SHA1), not encrypted"
    )
    with asyncio.Runner() as runner:

        timer = partial(asgi.timer, runner)

        manager = _cookie_manager()
        peers = [
            asgi.ASGIPeer(
                "websession",
                websession.ASGISessionMiddleware(asgi.counter_app, manager),
                manager.aclose,
            ),
            starlette_cookie_peer(),
        ]
        try:
            ours, peer = measure([(p.name, timer(p)) for p in peers], settings)
            met = _compare(
                collector, "cookie-asgi", "Cookie sessions, ASGI", ours, peer, COOKIE_GOAL,
                notes="websession: AES-256-GCM sealed; Starlette: signed (itsdangerous), "
                      "not encrypted")
            if profile:
                profile_run(
                    partial(timer(peers[0]), settings.requests),
                    f"cookie asgi websession, {settings.requests:,} requests",
                )
        finally:
            for p in peers:
                runner.run(p.close())
    return met


def sqlite_suite(directory: Path, sizes: Sizes, *, profile: bool,
                 collector: Collector) -> None:
    settings = sizes.settings(sizes.sqlite_requests)
    directory.mkdir()
    manager = websession.Manager("sqlite", {"ProviderConfig": str(directory / "s.db")})
    peer = _websession_wsgi("websession", manager)
    print(
        f"\nsqlite: WSGI, {settings.rounds} rounds x {settings.requests:,} requests "
        "(WAL, synchronous=NORMAL)"
    )
    try:
        (result,) = _wsgi_measure([peer], settings)
        print(
            f"{'sqlite':<11} websession {result.median:>9,.0f} req/s (median of "
            f"{len(result.rates)} rounds; best {result.best:,.0f} req/s; no peer, no goal)"
        )
        collector.alone("sqlite", "SQLite store, WSGI", result,
                        notes="WAL, synchronous=NORMAL; no peer ships an SQLite store")
        if profile:
            _profile_wsgi(peer, settings.requests, "sqlite websession")
    finally:
        peer.close()


# -- garbage collection ---------------------------------------------------------------


class GCError(AssertionError):
    """A GC pass removed the wrong sessions."""


@dataclass(frozen=True, slots=True)
class GCResult:
    """One timed GC pass and how its expired sessions were made."""

    store: str
    expired: int
    live: int
    create_seconds: float
    gc_seconds: float


def run_gc(store: str, manager: websession.Manager, *, expired: int, live: int) -> GCResult:
    """Time one ``manager.gc()`` over ``expired`` expired and ``live`` live sessions.

    The live sessions are saved through the manager; the expired ones are written with the
    provider's ``create`` (a live session's payload, ``EXPIRE_AFTER`` seconds to live),
    then waited out. Raises :class:`GCError` unless the pass removed exactly the expired
    sessions and every live one still reads back.
    """
    provider = manager.provider
    if not isinstance(provider, websession.BaseProvider):
        raise TypeError(f"{store}: not a BaseProvider")
    live_ids: list[str] = []
    for n in range(live):
        session = manager.get_session_store("")  # an unknown ID: a fresh session
        session["n"] = n
        session.session_release()
        live_ids.append(session.session_id())
    template = provider.read(live_ids[0])
    if template is None:
        raise GCError(f"gc {store}: a live session just saved cannot be read")

    started = time.perf_counter()
    deadline = 0.0
    for _ in range(expired):
        deadline = time.time() + EXPIRE_AFTER
        if not provider.create(secrets.token_hex(16), websession.Record(
            template.payload, deadline, 1
        )):
            raise GCError(f"gc {store}: a fresh random ID was already taken")
    create_seconds = time.perf_counter() - started
    time.sleep(max(0.0, deadline - time.time()) + 0.05)

    # Expired sessions in production were written back long ago; unlinking files still
    # dirty in the page cache is far cheaper, and would flatter the file provider.
    os.sync()
    gc.collect()
    started = time.perf_counter()
    removed = manager.gc()
    gc_seconds = time.perf_counter() - started

    if removed != expired:
        raise GCError(f"gc {store}: removed {removed:,} sessions, expected {expired:,}")
    for n, sid in enumerate(live_ids):
        if manager.get_session_store(sid).get("n") != n:
            raise GCError(f"gc {store}: live session #{n} did not survive the GC pass")
    active = manager.get_active_session()
    if active != live:
        raise GCError(f"gc {store}: {active:,} sessions left, expected {live:,}")
    return GCResult(store, expired, live, create_seconds, gc_seconds)


def gc_suite(directory: Path, sizes: Sizes, collector: Collector) -> None:
    counts = ", ".join(f"{n:,}" for n in sizes.gc_expired)
    print(
        f"\ngc: one manager.gc() pass over {counts} expired sessions next to "
        f"{sizes.gc_live:,} live ones (expired ones written with provider.create; os.sync() "
        "before the pass); a fresh store for each count"
    )

    def managers(where: Path) -> dict[str, Callable[[], websession.Manager]]:
        return {
            "memory": lambda: websession.Manager("memory"),
            "file": lambda: websession.Manager(
                "file", {"ProviderConfig": {"path": str(where / "file"), "fsync": False}}
            ),
            "sqlite": lambda: websession.Manager(
                "sqlite", {"ProviderConfig": str(where / "gc.db")}
            ),
        }

    directory.mkdir()
    for expired in sizes.gc_expired:
        where = directory / str(expired)
        where.mkdir()
        for store, make in managers(where).items():
            with make() as manager:
                result = run_gc(store, manager, expired=expired, live=sizes.gc_live)
            print(
                f"{'gc ' + store:<11} removed {result.expired:,} expired in "
                f"{result.gc_seconds:.3f} s ({result.expired / result.gc_seconds:,.0f}/s); "
                f"{result.live:,} live all still readable; creating the expired took "
                f"{result.create_seconds:.1f} s "
                f"({result.expired / result.create_seconds:,.0f}/s)"
            )
            collector.gc(store, result.expired, result.live, result.gc_seconds)


# -- command line ---------------------------------------------------------------------

SUITES = ("file", "memcached", "cookie", "sqlite", "gc")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.storage_bench",
        description="websession's file, memcached, cookie and SQLite providers against "
        "Beaker and Starlette, in-process.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a short run ({QUICK.rounds} rounds, at most {max(QUICK.gc_expired):,} "
        "sessions for GC)",
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per peer")
    parser.add_argument(
        "--only", choices=SUITES, action="append", help="run this suite only (repeatable)"
    )
    parser.add_argument(
        "--dir",
        help="where to make the scratch directory (default: the system's temporary "
        "directory); the file results depend on its filesystem",
    )
    parser.add_argument(
        "--memcached", default="127.0.0.1:11211",
        help="host:port of the memcached the memcached suite uses (default: %(default)s)",
    )
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 if a goal is not met"
    )
    parser.add_argument(
        "--profile", action="store_true", help="afterwards, profile websession's loops"
    )
    add_argument(parser)
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = dataclasses.replace(sizes, rounds=args.rounds)
    suites: tuple[str, ...] = tuple(args.only) if args.only else SUITES
    print(
        f"websession {package_version('websession')} vs Beaker "
        f"{package_version('beaker')} (python-memcached "
        f"{package_version('python-memcached')}), starlette "
        f"{package_version('starlette')}; {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print("peers alternate within each round; a ratio is the median of per-round ratios")
    started = time.perf_counter()
    all_met = True
    collector = Collector("storage", "python -m bench.storage_bench", {
        "rounds": sizes.rounds, "file_requests": sizes.file_requests,
        "memcached_requests": sizes.memcached_requests,
        "cookie_requests": sizes.cookie_requests, "sqlite_requests": sizes.sqlite_requests,
        "gc_expired": list(sizes.gc_expired), "gc_live": sizes.gc_live, "quick": args.quick})
    with tempfile.TemporaryDirectory(prefix="websession-bench-", dir=args.dir) as scratch:
        root = Path(scratch)
        print(f"scratch directory {root} ({_filesystem(scratch)})")
        collector.extra["filesystem"] = _filesystem(scratch)
        if "file" in suites:
            all_met &= file_suite(root / "file", sizes, profile=args.profile,
                                  collector=collector)
        if "memcached" in suites:
            all_met &= memcached_suite(args.memcached, sizes, profile=args.profile,
                                       collector=collector)
        if "cookie" in suites:
            all_met &= cookie_asgi_suite(sizes, profile=args.profile, collector=collector)
            all_met &= cookie_wsgi_suite(sizes, profile=args.profile, collector=collector)
        if "sqlite" in suites:
            sqlite_suite(root / "sqlite", sizes, profile=args.profile, collector=collector)
        if "gc" in suites:
            gc_suite(root / "gc", sizes, collector)
    print(f"\ndone in {time.perf_counter() - started:.0f} s")
    collector.write(args.results)
    return 1 if args.check and not all_met else 0


if __name__ == "__main__":
    sys.exit(main())
