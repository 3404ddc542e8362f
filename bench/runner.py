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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from importlib.metadata import PackageNotFoundError, version

from . import asgi, wsgi
from .results import Collector, add_argument

__all__ = ["Result", "main", "measure", "package_version", "parse_counts", "profile_run"]

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


def measure(peers: Sequence[tuple[str, Timer]], settings: Settings) -> list[Result]:
    for _, timer in peers:
        timer(settings.warmup)
    results = {name: Result(name) for name, _ in peers}
    for round_no in range(settings.rounds):
        # Alternate the order so that neither peer always runs right after the other.
        order = peers if round_no % 2 == 0 else list(reversed(peers))
        for name, timer in order:
            gc.collect()
            results[name].rates.append(settings.requests / timer(settings.requests))
    return [results[name] for name, _ in peers]


#: The scenario each suite records for ``bench.report``: (id, title).
_SCENARIOS = {
    "wsgi": ("memory-wsgi", "WSGI read-modify-write, memory stores"),
    "asgi": ("memory-asgi", "ASGI read-modify-write, memory stores"),
}


def _report(suite: str, ours: Result, peer: Result, collector: Collector | None = None) -> bool:
    # The verdict is the median of per-round ratios: both peers of a round ran back to
    # back, so a noisy moment on a shared machine slows both and mostly cancels out.
    paired = statistics.median(o / p for o, p in zip(ours.rates, peer.rates, strict=True))
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
    base = QUICK if args.quick else FULL
    settings = Settings(
        rounds=args.rounds or base.rounds,
        requests=args.requests or base.requests,
        warmup=min(base.warmup, args.requests or base.warmup),
    )
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
