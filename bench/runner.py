"""Run the suites: warm each peer up, then alternate peers over several timed rounds."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import platform
import pstats
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from . import asgi, wsgi
from .results import Collector, add_argument

__all__ = [
    "Result",
    "alternate",
    "count_kept",
    "delete_keys",
    "main",
    "measure",
    "package_version",
    "paired_ratio",
    "parse_counts",
    "percentile",
    "print_kept",
    "print_latencies",
    "print_settings",
    "print_throughput",
    "profile_run",
    "redis_version",
    "settings_of",
    "start_store_bench",
    "store_parser",
]

T = TypeVar("T")

#: websession must be at least this many times faster than each peer.
GOAL = 2.0


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int
    requests: int
    warmup: int


FULL = Settings(rounds=15, requests=10_000, warmup=3_000)
QUICK = Settings(rounds=3, requests=2_000, warmup=500)


@dataclass(slots=True)
class Result:
    """One peer's timed rounds, as requests per second."""

    name: str
    rates: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


#: Runs ``requests`` requests through one peer and returns the seconds they took.
Timer = Callable[[int], float]


def alternate(peers: Sequence[tuple[str, Callable[[], T]]], rounds: int) -> dict[str, list[T]]:
    """Run each peer once a round for ``rounds`` rounds; what each run returned, by peer.

    The order alternates, so that neither peer always runs right after the other.
    """
    results: dict[str, list[T]] = {name: [] for name, _ in peers}
    for round_no in range(rounds):
        for name, run in peers if round_no % 2 == 0 else peers[::-1]:
            gc.collect()
            results[name].append(run())
    return results


def measure(peers: Sequence[tuple[str, Timer]], settings: Settings) -> list[Result]:
    """Warm each peer up, then time them in alternating rounds: their rates, in order."""
    for _, timer in peers:
        timer(settings.warmup)
    requests = settings.requests

    def rate(timer: Timer) -> Callable[[], float]:
        return lambda: requests / timer(requests)

    rates = alternate([(name, rate(timer)) for name, timer in peers], settings.rounds)
    return [Result(name, rates[name]) for name, _ in peers]


def paired_ratio(ours: Result, other: Result) -> float:
    """The median of the per-round ratios of ``ours`` to ``other``: both ran back to back
    in each round, so a noisy moment on a shared machine slows both and mostly cancels."""
    return statistics.median(o / p for o, p in zip(ours.rates, other.rates, strict=True))


def print_throughput(title: str, ours: Result, others: Sequence[tuple[Result, float | None]],
                     width: int = 48) -> bool:
    """Print each peer's rates and websession's ratio to each other peer against its goal
    (``None``: no goal, the row explains the figures); whether every goal is met."""
    met = True
    print(title)
    print(f"  {ours.name:<{width}} {ours.median:>7,.0f} req/s median {ours.best:>7,.0f} best")
    for other, goal in others:
        ratio = paired_ratio(ours, other)
        per_round = [o / p for o, p in zip(ours.rates, other.rates, strict=True)]
        if goal is None:
            verdict = "no goal: explains the figures"
        else:
            met &= ratio >= goal
            verdict = f"goal >= {goal:g}x{'' if ratio >= goal else ', BELOW GOAL'}"
        print(f"  {other.name:<{width}} {other.median:>7,.0f} req/s median "
              f"{other.best:>7,.0f} best   websession/it {ratio:.2f}x (rounds "
              f"{min(per_round):.2f}-{max(per_round):.2f}; {verdict})")
    return met


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which ``fraction`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def print_latencies(rows: Mapping[str, Sequence[tuple[float, Sequence[float]]]],
                    width: int = 44) -> list[dict[str, Any]]:
    """Print each peer's median rate and p50/p99 latency over its rounds of ``(rate,
    latencies)``, websession's first; the series for ``Collector.latency``."""
    series: list[dict[str, Any]] = []
    for index, (name, rounds) in enumerate(rows.items()):
        rates = [rate for rate, _ in rounds]
        latencies = [latency for _, round_latencies in rounds for latency in round_latencies]
        p50, p99 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.99) * 1000
        print(f"  {name:<{width}} {statistics.median(rates):>7,.0f} req/s median"
              f"   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
        series.append({"name": name, "ours": index == 0, "rates": rates,
                       "p50_ms": p50, "p99_ms": p99})
    return series


def print_kept(name: str, runs: Sequence[int], requests: int, width: int = 44,
               extra: str = "") -> None:
    """Print how many of ``requests`` concurrent keys a peer kept, run by run."""
    print(f"  {name:<{width}} kept {statistics.median(runs):>4g} of {requests} "
          f"(runs: {', '.join(map(str, runs))}{extra})")


def count_kept(bursts: Sequence[tuple[str, Callable[[], int]]], runs: int, requests: int,
               collector: Collector, width: int = 44) -> None:
    """Run each peer's burst of ``requests`` concurrent keys ``runs`` times, printing how
    many keys each run kept, and keep the counts beside ``collector``'s figures (not as a
    keys_kept scenario: ``bench.report`` draws one keys chart, ``bench.keys_bench``'s)."""
    kept: dict[str, list[int]] = {}
    for name, burst in bursts:
        kept[name] = [burst() for _ in range(runs)]
        print_kept(name, kept[name], requests, width)
    collector.extra["keys_kept"] = {"requests": requests, "runs": kept}


# -- what the store benchmarks share -------------------------------------------------------


def store_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The options of a benchmark against a Redis server: ``--redis``, ``--quick``,
    ``--rounds``, ``--requests``, ``--check`` and ``--results``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--rounds", type=int, help="timed rounds per peer")
    parser.add_argument("--requests", type=int, help="requests per round")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 if a goal is missed")
    add_argument(parser)
    return parser


def start_store_bench(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                      full: Settings, quick: Settings,
                      ) -> tuple[argparse.Namespace, Settings, str] | None:
    """Parse a store benchmark's options and find its Redis server: the options, the
    settings and the server's version; ``None`` (said on stderr) if it cannot be reached."""
    args = parse_counts(parser, argv)
    server = redis_version(args.redis)
    return None if server is None else (args, settings_of(args, full, quick), server)


def settings_of(args: argparse.Namespace, full: Settings = FULL,
                quick: Settings = QUICK) -> Settings:
    """The rounds, requests and warm-up the parsed options ask for, over a benchmark's own
    defaults (``full``, or ``quick`` with ``--quick``)."""
    base = quick if args.quick else full
    return Settings(rounds=args.rounds or base.rounds,
                    requests=args.requests or base.requests,
                    warmup=min(base.warmup, args.requests or base.warmup))


def print_settings(settings: Settings) -> None:
    """The line under a benchmark's title that says how it runs."""
    print(f"{settings.rounds} rounds x {settings.requests:,} requests per peer, peers "
          "alternating; each ratio is the median of per-round ratios\n")


def redis_version(url: str) -> str | None:
    """The version of the Redis server at ``url``; ``None``, and a line on stderr, if it
    cannot be reached."""
    import redis

    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2) as probe:
            return str(probe.info("server")["redis_version"])
    except redis.RedisError as exc:
        print(f"Redis is not reachable at {url}: {exc}", file=sys.stderr)
        return None


def delete_keys(url: str, *patterns: str) -> None:
    """Delete the keys a benchmark left in Redis (``patterns`` as ``SCAN MATCH`` takes)."""
    import redis

    with redis.Redis.from_url(url) as client:
        keys = [key for pattern in patterns
                for key in client.scan_iter(match=pattern, count=1000)]
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])


#: The scenario each suite records for ``bench.report``: (id, title).
_SCENARIOS = {
    "wsgi": ("memory-wsgi", "WSGI read-modify-write, memory stores"),
    "asgi": ("memory-asgi", "ASGI read-modify-write, memory stores"),
}


def _report(suite: str, ours: Result, peer: Result, collector: Collector | None = None) -> bool:
    paired = paired_ratio(ours, peer)
    met = paired >= GOAL
    print(
        f"{suite:<5} websession {ours.best:>9,.0f} req/s  {peer.name} {peer.best:>9,.0f} req/s"
        f"  (best rounds: {ours.best / peer.best:.2f}x)"
    )
    print(
        f"{'':<5} median:    {ours.median:>9,.0f} req/s  {'':<{len(peer.name)}}"
        f" {peer.median:>9,.0f} req/s  (medians: {ours.median / peer.median:.2f}x)"
    )
    print(
        f"{'':<5} ratio {paired:.2f}x (median of {len(ours.rates)} paired rounds; goal >= "
        f"{GOAL:g}x){'' if met else '  BELOW GOAL'}"
    )
    if collector is not None:
        scenario_id, title = _SCENARIOS[suite]
        collector.throughput(scenario_id, title, ours, [(peer, GOAL)],
                             notes="in-process requests, no network; both sides use "
                                   "their memory backend")
    return met


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def profile_run(run: Callable[[], object], title: str, limit: int = 25) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(limit)
    print(f"\n=== profile: {title} (sorted by own time) ===")
    print(out.getvalue().strip())


def _wsgi_suite(settings: Settings, *, profile: bool, collector: Collector) -> bool:
    peers = [wsgi.websession_peer(), wsgi.beaker_peer()]
    try:
        ours, peer = measure([(p.name, partial(wsgi.run_wsgi, p)) for p in peers], settings)
        met = _report("wsgi", ours, peer, collector)
        if profile:
            profile_run(
                partial(wsgi.run_wsgi, peers[0], settings.requests),
                f"wsgi websession, {settings.requests:,} requests",
            )
    finally:
        for p in peers:
            p.close()
    return met


def _asgi_suite(settings: Settings, *, profile: bool, collector: Collector) -> bool:
    # One event loop for every ASGI round; each round is one coroutine on it.
    with asyncio.Runner() as runner:

        timer = partial(asgi.timer, runner)

        peers = [asgi.websession_peer(), asgi.starsessions_peer()]
        try:
            ours, peer = measure([(p.name, timer(p)) for p in peers], settings)
            met = _report("asgi", ours, peer, collector)
            if profile:
                profile_run(
                    partial(timer(peers[0]), settings.requests),
                    f"asgi websession, {settings.requests:,} requests",
                )
        finally:
            for p in peers:
                runner.run(p.close())
    return met


def parse_counts(parser: argparse.ArgumentParser,
                 argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse ``argv``, refusing a ``--rounds`` or ``--requests`` below 1."""
    args = parser.parse_args(argv)
    for option in ("rounds", "requests"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            parser.error(f"--{option} must be at least 1")
    return args


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="websession against Beaker (WSGI) and starsessions (ASGI), in-process.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a short run ({QUICK.rounds} rounds x {QUICK.requests} requests)",
    )
    parser.add_argument("--rounds", type=int, help="timed rounds per peer")
    parser.add_argument("--requests", type=int, help="requests per round")
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit with status 1 if websession is below {GOAL:g}x a peer",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="afterwards, profile websession's loops with cProfile",
    )
    parser.add_argument("--only", choices=("wsgi", "asgi"), help="run one suite only")
    add_argument(parser)
    return parse_counts(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    settings = settings_of(args)
    v = package_version
    print(
        f"websession {v('websession')} vs Beaker {v('beaker')}, "
        f"starsessions {v('starsessions')} (starlette {v('starlette')}); "
        f"{platform.python_implementation()} {platform.python_version()}"
    )
    print(
        f"{settings.rounds} rounds x {settings.requests:,} requests per peer, peers "
        f"alternating; the verdict is the median of per-round ratios"
    )
    suites = ("wsgi", "asgi") if args.only is None else (args.only,)
    collector = Collector("memory", "python -m bench", {
        "rounds": settings.rounds, "requests": settings.requests, "quick": args.quick})
    all_met = True
    if "wsgi" in suites:
        all_met &= _wsgi_suite(settings, profile=args.profile, collector=collector)
    if "asgi" in suites:
        all_met &= _asgi_suite(settings, profile=args.profile, collector=collector)
    collector.write(args.results)
    return 1 if args.check and not all_met else 0
