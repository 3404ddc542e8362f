"""``make reliability``: real servers under load while their session store stalls and dies.

For each store — a private Redis (AOF, fsync always), MariaDB and PostgreSQL, each
started here on a free loopback port — and each server — uvicorn (ASGI, one process) and
gunicorn (WSGI, 4 workers, gthread) — it runs ``--clients`` concurrent browsers, each a
keep-alive connection of its own with its own cookie, against a counter: every response
must be the browser's previous count plus one. A request that failed (a 503, a dropped
connection) may or may not have saved, so the next count may also be one more per failure;
anything else is a lost write (lower) or a double-applied one (higher). Then:

1. two load runs of ``--seconds`` each: requests/s, p50/p99, errors by status, and the
   servers' resident memory (RSS) before and after;
2. a stall: the store is stopped with SIGSTOP (every process it runs) for ``--stall``
   seconds mid-load, then resumed: how long the failing requests took (the goal: within
   ``operationTimeout`` + 0.5 s, as a 503), and how long until requests succeed again;
3. a crash: the store is killed with SIGKILL mid-load and restarted: the same figures.

The figures go to ``docs/reliability.md``. Run it on a quiet machine for figures to quote;
``--quick`` shortens every phase for a smoke run. The servers run :mod:`reliability.app`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.client import CookieJar

from reliability.app import CONFIG_ENV, HANDLED, PROVIDER_ENV

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "docs" / "reliability.md"
REQUEST_TIMEOUT = 60.0  # a client gives up on a request after this (counted as "timeout")
MARGIN = 0.5  # the goal: a request failing during a stall ends within the deadline + this

# -- the load: browsers, each on its own connection ------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One request as its browser saw it."""

    start: float
    end: float
    status: int  # 0: no response (connection error or timeout)
    handled: float | None  # seconds the server spent, from X-Handled


@dataclass
class Browser:
    """A browser: its cookies, its connection, and what its counter has shown."""

    jar: CookieJar = field(default_factory=CookieJar)
    acked: int = 0  # the count of the last successful response
    in_doubt: int = 0  # failed requests since then: each may or may not have saved
    lost: int = 0
    doubled: int = 0
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    def check(self, n: int) -> None:
        """Account for a successful response's count."""
        if self.acked and n < self.acked + 1:
            self.lost += 1
        elif n > self.acked + 1 + self.in_doubt:
            self.doubled += 1
        self.acked, self.in_doubt = n, 0

    async def close(self) -> None:
        """Drop the connection."""
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _exchange(browser: Browser, port: int) -> tuple[int, dict[str, list[str]], bytes]:
    if browser.writer is None:
        browser.reader, browser.writer = await asyncio.open_connection("127.0.0.1", port)
    assert browser.reader is not None and browser.writer is not None
    cookie = f"Cookie: {browser.jar.header}\r\n" if browser.jar.header else ""
    browser.writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}\r\n".encode())
    await browser.writer.drain()
    head = await browser.reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    if "chunked" in headers.get("transfer-encoding", []):
        body = b""
        while True:
            size = int((await browser.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += (await browser.reader.readexactly(size + 2))[:size]
            if not size:
                break
    else:
        body = await browser.reader.readexactly(int(headers.get("content-length", ["0"])[0]))
    if "close" in headers.get("connection", []):
        await browser.close()
    return status, headers, body


async def _browse(browser: Browser, port: int, stop: asyncio.Event,
                  outcomes: list[Outcome]) -> None:
    while not stop.is_set():
        start = time.monotonic()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                status, headers, body = await _exchange(browser, port)
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            await browser.close()
            outcomes.append(Outcome(start, time.monotonic(), 0, None))
            browser.in_doubt += 1
            await asyncio.sleep(0.05)  # a server that is down: do not spin
            continue
        handled = headers.get(HANDLED)
        outcomes.append(Outcome(start, time.monotonic(), status,
                                float(handled[0]) if handled else None))
        if status == 200:
            browser.jar.update(headers.get("set-cookie", []))
            try:
                browser.check(int(body))
            except ValueError:  # not a count: as wrong as a lost write
                browser.lost += 1
        else:
            browser.in_doubt += 1
            if status >= 500:
                await asyncio.sleep(0.05)


class Load:
    """``clients`` browsers hammering a server on ``port``, from a thread of their own, so
    that the conductor can stall and kill stores meanwhile."""

    def __init__(self, port: int, clients: int) -> None:
        self.port = port
        self.browsers = [Browser() for _ in range(clients)]
        self.outcomes: list[Outcome] = []
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def everyone() -> None:
            await asyncio.gather(*(_browse(b, self.port, self._stop, self.outcomes)
                                   for b in self.browsers))
            for browser in self.browsers:
                await browser.close()

        self._loop.run_until_complete(everyone())

    def since(self, moment: float) -> list[Outcome]:
        """Requests that started at or after ``moment``."""
        return [o for o in list(self.outcomes) if o.start >= moment]

    def stop(self) -> None:
        """Let every browser finish its request, and stop."""
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(REQUEST_TIMEOUT + 10)
        self._loop.close()

    @property
    def lost(self) -> int:
        """Lost writes seen so far, all browsers."""
        return sum(b.lost for b in self.browsers)

    @property
    def doubled(self) -> int:
        """Double-applied writes seen so far, all browsers."""
        return sum(b.doubled for b in self.browsers)


# -- the stores and the servers ----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port} after {within:g} s") from None
            time.sleep(0.05)


class Store(ABC):
    """A private store: what the provider is told, and how to stall, kill and restart it."""

    name: ClassVar[str]
    provider: ClassVar[str]

    def __init__(self, root: Path, deadline: float) -> None:
        self.root = root
        self.deadline = deadline

    @abstractmethod
    def start(self) -> None:
        """Start it (again, after :meth:`kill`, on the same port and files)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The provider's ``providerConfig``."""

    @property
    @abstractmethod
    def pid(self) -> int:
        """The main process."""

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL it and everything it started, as a crash would."""

    @abstractmethod
    def stop(self) -> None:
        """Stop it for good."""


class RedisStore(Store):
    """A private redis-server with an append-only file synced on every write, so that a
    crash loses no acknowledged write."""

    name = "Redis"
    provider = "redis"

    def __init__(self, root: Path, deadline: float) -> None:
        from tests.redis_servers import RedisServer, free_port

        super().__init__(root, deadline)
        self.server = RedisServer(root / "redis", free_port(), "--appendonly", "yes",
                                  "--appendfsync", "always")

    def start(self) -> None:
        """Start the server (it reloads its append-only file)."""
        self.server.start()

    def config(self) -> dict[str, Any]:
        """Its address, the deadline, a prefix of our own."""
        return {"save_path": f"127.0.0.1:{self.server.port}",
                "operation_timeout": self.deadline, "key_prefix": "reliability:"}

    @property
    def pid(self) -> int:
        """redis-server's process."""
        assert self.server.process is not None
        return self.server.process.pid

    def kill(self) -> None:
        """SIGKILL."""
        self.server.stop(kill=True)

    def stop(self) -> None:
        """SIGTERM."""
        self.server.stop()


class DatabaseStore(Store):
    """A private MariaDB or PostgreSQL server, as the tests start them
    (:func:`tests.db_servers.private_server`)."""

    def __init__(self, root: Path, deadline: float) -> None:
        super().__init__(root, deadline)
        self._stack = contextlib.ExitStack()
        self.server: Any = None

    @abstractmethod
    def server_class(self) -> Any:
        """tests.db_servers' class for this server."""

    def start(self) -> None:
        """Initialise and start; start again after a crash."""
        if self.server is None:
            from tests.db_servers import private_server

            self.server = self._stack.enter_context(private_server(self.server_class()))
        else:
            self.server.start()

    def config(self) -> dict[str, Any]:
        """The DSN, the deadline, a table of our own."""
        return {"dsn": self.server.dsn, "operationTimeout": self.deadline,
                "table": "websession_reliability"}

    @property
    def pid(self) -> int:
        """The server's main process."""
        return int(self.server.process.pid)

    def kill(self) -> None:
        """SIGKILL the server and every process it started."""
        from tests.servers import signal_tree

        process = self.server.process
        signal_tree(process.pid, signal.SIGKILL)
        process.wait(30)
        self.server.process = None  # stopped: start() may run it again
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.server.port), timeout=0.2).close()
            except OSError:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        """A clean shutdown; its files go."""
        self._stack.close()


class MariaDBStore(DatabaseStore):
    """Private MariaDB."""

    name = "MariaDB"
    provider = "mysql"

    def server_class(self) -> Any:
        """tests.db_servers.MariaDBServer."""
        from tests.db_servers import MariaDBServer

        return MariaDBServer


class PostgresStore(DatabaseStore):
    """Private PostgreSQL."""

    name = "PostgreSQL"
    provider = "postgresql"

    def server_class(self) -> Any:
        """tests.db_servers.PostgresServer."""
        from tests.db_servers import PostgresServer

        return PostgresServer


STORES: dict[str, type[Store]] = {"redis": RedisStore, "mariadb": MariaDBStore,
                                  "postgresql": PostgresStore}


@dataclass
class AppServer:
    """uvicorn or gunicorn, serving this module's application."""

    name: str
    interface: str  # "ASGI" or "WSGI"
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def rss(self) -> float:
        """Resident memory of the server and its workers, in MB."""
        from tests.servers import descendants

        total = 0
        for pid in [self.process.pid, *descendants(self.process.pid)]:
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_server(name: str, store: Store, root: Path) -> AppServer:
    """Start ``name`` ("uvicorn" or "gunicorn") on a free port, over ``store``."""
    port = _free_port()
    env = {**os.environ, PROVIDER_ENV: store.provider, CONFIG_ENV: json.dumps(store.config()),
           "PYTHONPATH": str(ROOT)}
    bin_dir = Path(sys.executable).parent
    if name == "uvicorn":
        command = [str(bin_dir / "uvicorn"), "reliability.app:asgi_app", "--host",
                   "127.0.0.1", "--port", str(port), "--no-access-log", "--lifespan", "off",
                   "--timeout-keep-alive", "75"]
        interface = "ASGI"
    else:
        command = [str(bin_dir / "gunicorn"), "reliability.app:wsgi_app", "--bind",
                   f"127.0.0.1:{port}", "--workers", "4", "--worker-class", "gthread",
                   "--threads", "8", "--keep-alive", "75", "--timeout", "60"]
        interface = "WSGI"
    log = root / f"{name}-{store.provider}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = AppServer(name, interface, process, port, log)
    try:
        _wait_listening(port, 30)
    except RuntimeError:
        server.stop()
        raise RuntimeError(f"{name} did not start:\n{log.read_text()[-2000:]}") from None
    return server


# -- one scenario: a store behind a server --------------------------------------------------


@dataclass
class Settings:
    """How long each phase lasts, and how hard."""

    clients: int
    seconds: float
    stall: float
    deadline: float
    settle: float


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _statuses(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts = Counter("no response" if o.status == 0 else str(o.status) for o in outcomes)
    return dict(sorted(counts.items()))


@dataclass
class Run:
    """A load run's figures."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]


def _run_figures(outcomes: list[Outcome], seconds: float) -> Run:
    ok = [o.end - o.start for o in outcomes if o.status == 200]
    return Run(len(outcomes) / seconds, _percentile(ok, 0.50) * 1000,
               _percentile(ok, 0.99) * 1000, _statuses(outcomes))


@dataclass
class Outage:
    """An outage's figures: what requests caught in it saw, and the way back."""

    kind: str
    statuses: dict[str, int]
    worst_failure_s: float  # the longest a failing request took, client side
    worst_handled_s: float  # the longest the server spent on a failing request
    over_deadline: int  # failing requests that took longer than the deadline + MARGIN
    recovered_s: float  # from the store's return to the first success


def _outage(load: Load, kind: str, began: float, back: float, deadline: float) -> Outage:
    # In flight at any moment of the outage: sent before it and answered during it, or
    # sent during it (and answered during it or once the store was back).
    caught = [o for o in list(load.outcomes) if o.start < back and o.end > began]
    failed = [o for o in caught if o.status != 200]
    after = [o for o in load.since(back) if o.status == 200]
    recovered = min((o.end for o in after), default=float("nan")) - back
    deadline_bound = deadline + MARGIN
    worst = max((o.end - o.start for o in failed), default=0.0)
    handled = max((o.handled or 0.0 for o in failed), default=0.0)
    over = sum(1 for o in failed if (o.handled if o.handled is not None else
                                     o.end - o.start) > deadline_bound)
    return Outage(kind, _statuses(caught), worst, handled, over, recovered)


@dataclass
class Scenario:
    """Everything measured for one store behind one server."""

    store: str
    server: str
    interface: str
    runs: list[Run]
    rss_before_mb: float
    rss_after_mb: float
    outages: list[Outage]
    lost: int
    doubled: int
    requests: int


def _wait_for_success(load: Load, since: float, within: float) -> None:
    deadline = time.monotonic() + within
    while not any(o.status == 200 for o in load.since(since)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no successful request {within:g} s after the store's return")
        time.sleep(0.05)


def run_scenario(store: Store, server_name: str, settings: Settings, root: Path) -> Scenario:
    """Two load runs, a stall and a crash of ``store`` behind ``server_name``."""
    from tests.servers import stopped

    server = start_server(server_name, store, root)
    load = Load(server.port, settings.clients)
    try:
        time.sleep(min(3.0, settings.seconds / 2))  # warm: connections, code paths
        rss_before = server.rss()
        runs = []
        for _ in range(2):
            began = time.monotonic()
            time.sleep(settings.seconds)
            runs.append(_run_figures([o for o in load.since(began)
                                      if o.end <= began + settings.seconds],
                                     settings.seconds))
        rss_after = server.rss()
        print(f"  {store.name} / {server_name}: {runs[0].requests_per_s:.0f} and "
              f"{runs[1].requests_per_s:.0f} req/s; RSS {rss_before:.1f} -> "
              f"{rss_after:.1f} MB", flush=True)

        time.sleep(settings.settle)
        stall_began = time.monotonic()
        with stopped(store.pid):
            time.sleep(settings.stall)
        stall_over = time.monotonic()
        _wait_for_success(load, stall_over, 60)
        time.sleep(settings.settle)
        stall = _outage(load, "stall (SIGSTOP)", stall_began, stall_over, settings.deadline)

        crash_began = time.monotonic()
        store.kill()
        time.sleep(1.0)
        store.start()
        restarted = time.monotonic()
        _wait_for_success(load, restarted, 60)
        time.sleep(settings.settle)
        crash = _outage(load, "kill -9, restart", crash_began, restarted, settings.deadline)
        for outage in (stall, crash):
            print(f"  {outage.kind}: {outage.statuses}, worst failure "
                  f"{outage.worst_failure_s:.2f} s, back in {outage.recovered_s:.2f} s",
                  flush=True)
    finally:
        load.stop()
        server.stop()
    return Scenario(store.name, server_name, server.interface, runs, rss_before, rss_after,
                    [stall, crash], load.lost, load.doubled, len(load.outcomes))


# -- the report --------------------------------------------------------------------------------


def _fmt_statuses(statuses: dict[str, int]) -> str:
    return ", ".join(f"{count} x {status}" for status, count in statuses.items()) or "—"


def render(scenarios: list[Scenario], settings: Settings, command: str, note: str) -> str:
    """docs/reliability.md."""
    lines = [
        "# Reliability under load, stalls and crashes",
        "",
        "Written by `make reliability` (`python -m reliability`); do not edit by hand.",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
        f"{platform.node() or 'this machine'} ({os.cpu_count()} cores, Python "
        f"{platform.python_version()}), with `{command}`. {note}",
        "",
        f"{settings.clients} concurrent browsers, each on its own keep-alive connection with "
        "its own cookie, increment a session counter and check every answer. Servers: "
        "uvicorn (ASGI, one process) and gunicorn (WSGI, 4 gthread workers of 8 threads). "
        f"Stores: private servers started for the run. `operationTimeout` is "
        f"{settings.deadline:g} s; the goal for a request caught in an outage is a 503 "
        f"within {settings.deadline + MARGIN:g} s (server side, `X-Handled`).",
        "",
        "## Load: two runs per store",
        "",
        f"Each run lasts {settings.seconds:g} s. RSS is the server's and its workers', "
        "before the first run and after the second.",
        "",
        "| store | server | req/s (run 1, run 2) | p50 / p99 ms (run 2) | statuses | "
        "RSS before → after (MB) | growth |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in scenarios:
        statuses: Counter[str] = Counter()
        for run in s.runs:
            statuses.update(run.statuses)
        lines.append(
            f"| {s.store} | {s.server} ({s.interface}) | {s.runs[0].requests_per_s:.0f}, "
            f"{s.runs[1].requests_per_s:.0f} | {s.runs[1].p50_ms:.1f} / "
            f"{s.runs[1].p99_ms:.1f} | {_fmt_statuses(dict(sorted(statuses.items())))} | "
            f"{s.rss_before_mb:.1f} → {s.rss_after_mb:.1f} | "
            f"{s.rss_after_mb - s.rss_before_mb:+.1f} MB |")
    lines += [
        "",
        "## Outages mid-load",
        "",
        f"A stall stops the store (every process) for {settings.stall:g} s; a crash kills "
        "it with SIGKILL and starts it again. *Worst failure* is the longest a request "
        "caught in the outage took to fail (client side / server side); *over the goal* "
        f"counts failing requests past {settings.deadline + MARGIN:g} s; *back in* runs from "
        "the store's return to the first success.",
        "",
        "| store | server | outage | statuses of requests caught in it | worst failure "
        "(client / server) | over the goal | back in |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in scenarios:
        for o in s.outages:
            lines.append(
                f"| {s.store} | {s.server} | {o.kind} | {_fmt_statuses(o.statuses)} | "
                f"{o.worst_failure_s:.2f} s / {o.worst_handled_s:.2f} s | {o.over_deadline} "
                f"| {o.recovered_s:.2f} s |")
    lines += [
        "",
        "## Writes",
        "",
        "Every answer checked against the browser's count: a lost write comes back lower, a "
        "double-applied one higher (a request that failed may or may not have saved, so "
        "one more per failure is allowed).",
        "",
        "| store | server | requests checked | lost writes | double-applied writes |",
        "|---|---|---|---|---|",
    ]
    for s in scenarios:
        lines.append(f"| {s.store} | {s.server} | {s.requests} | {s.lost} | {s.doubled} |")
    lines += ["", "## Goals", ""]
    lines += [f"- {line}" for line in goals(scenarios, settings)]
    return "\n".join(lines) + "\n"


def goals(scenarios: list[Scenario], settings: Settings) -> list[str]:
    """Each goal of issue 9, met or not, in words."""
    bound = settings.deadline + MARGIN
    over = sum(o.over_deadline for s in scenarios for o in s.outages)
    errors_500 = sum(o.statuses.get("500", 0) for s in scenarios for o in s.outages)
    errors_500 += sum(r.statuses.get("500", 0) for s in scenarios for r in s.runs)
    not_503 = sum(count for s in scenarios for o in s.outages
                  for status, count in o.statuses.items() if status not in ("200", "503"))
    lost = sum(s.lost + s.doubled for s in scenarios)
    growth = max((s.rss_after_mb - s.rss_before_mb for s in scenarios), default=0.0)

    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return [
        f"every request failing in an outage ends within {bound:g} s: {mark(over == 0)} "
        f"({over} over)",
        f"outages answer 503, never 500: {mark(errors_500 == 0)} ({errors_500} x 500; "
        f"{not_503} answers neither 200 nor 503, e.g. connections the store's crash cut)",
        f"0 lost or double-applied writes: {mark(lost == 0)} ({lost})",
        f"RSS growth under 5 MB across the two runs: {mark(growth < 5)} "
        f"(at most {growth:+.1f} MB)",
    ]


# -- the command ---------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m reliability", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="short phases (5 s runs, 3 s stall, 2 s deadline): a smoke run")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, help="each load run (default 20)")
    parser.add_argument("--stall", type=float, help="how long a stall lasts (default 8)")
    parser.add_argument("--deadline", type=float,
                        help="the providers' operationTimeout (default 5, their default)")
    parser.add_argument("--stores", default="redis,mariadb,postgresql")
    parser.add_argument("--servers", default="uvicorn,gunicorn")
    parser.add_argument("--note", default="",
                        help="a sentence for the report, e.g. what else loaded the machine")
    parser.add_argument("--output", type=Path, default=REPORT)
    return parser.parse_args(argv)


@contextlib.contextmanager
def _workspace() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="websession-reliability-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Run every scenario, write the report; 1 if a goal was missed."""
    args = _parse(argv)
    settings = Settings(
        clients=args.clients,
        seconds=args.seconds or (5.0 if args.quick else 20.0),
        stall=args.stall or (3.0 if args.quick else 8.0),
        deadline=args.deadline or (2.0 if args.quick else 5.0),
        settle=1.0 if args.quick else 3.0,
    )
    for tool in ("uvicorn", "gunicorn"):
        if not (Path(sys.executable).parent / tool).exists():
            print(f"{tool} is missing: `make reliability` installs it", file=sys.stderr)
            return 2
    scenarios: list[Scenario] = []
    with _workspace() as root:
        for key in args.stores.split(","):
            store = STORES[key](root, settings.deadline)
            print(f"{store.name}: starting a private server", flush=True)
            store.start()
            try:
                for server_name in args.servers.split(","):
                    scenarios.append(run_scenario(store, server_name, settings, root))
            finally:
                with contextlib.suppress(Exception):
                    store.stop()
    shown = [arg for arg in (argv or []) if arg != args.note and arg != "--note"]
    command = "make reliability" + (f" RELIABILITY_FLAGS='{' '.join(shown)}'" if shown else "")
    args.output.write_text(render(scenarios, settings, command, args.note))
    print(f"wrote {args.output}")
    results = goals(scenarios, settings)
    print("\n".join(results))
    return 0 if all("**not met**" not in line for line in results) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
