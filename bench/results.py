"""Structured results: every bench also writes what it printed as JSON, for ``bench.report``.

A bench module builds one :class:`Collector`, adds its scenarios as it reports them, and
writes ``bench/results/<bench>.json`` at the end (``--results DIR`` or the
``WEBSESSION_BENCH_RESULTS`` environment variable choose another folder). The files are
transient: ``make bench`` clears the folder first, so a report is made from one run.

Scenario kinds, each a JSON object with ``id``, ``title``, ``kind`` and ``notes``:

* ``throughput``: ``series`` of ``{name, rates, ours, round_trips}`` (requests per second,
  one per timed round, in round order) and ``ratios`` of websession's series against each
  other one: ``{against, ratios, goal}``, the per-round ratios the verdict is the median of;
* ``latency``: ``series`` of ``{name, rates, p50_ms, p99_ms, ours}`` under concurrency;
* ``gc``: ``points`` of ``{store, expired, live, seconds}``;
* ``keys_kept``: ``requests`` and ``rows`` of ``{name, store, framework, kept, ours}``, where
  ``kept`` lists the keys that survived in each run;
* ``operations``: ``rows`` of ``{name, value, unit, note}`` (migrate, list, revoke_user).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Only for annotations: bench.runner imports this module.
    from .runner import Result

__all__ = [
    "DEFAULT_DIR",
    "PACKAGES",
    "Collector",
    "add_argument",
    "machine",
    "paired_ratios",
    "results_dir",
]

DEFAULT_DIR = Path(__file__).resolve().parent / "results"
ENV_VAR = "WEBSESSION_BENCH_RESULTS"

#: Every package whose version the report prints (missing ones print as "?").
PACKAGES = (
    "websession",
    "beaker",
    "starsessions",
    "starlette",
    "flask",
    "flask-session",
    "cachelib",
    "django",
    "aiohttp",
    "aiohttp-session",
    "redis",
    "PyMySQL",
    "psycopg",
    "cryptography",
    "matplotlib",
)


def add_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--results DIR`` to a bench's command line."""
    parser.add_argument(
        "--results",
        type=Path,
        help=f"folder for the JSON results (default ${ENV_VAR} or bench/results)",
    )


def results_dir(chosen: Path | None = None) -> Path:
    """The folder results go to: ``chosen``, else ``$WEBSESSION_BENCH_RESULTS``, else the
    default."""
    if chosen is not None:
        return chosen
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT_DIR


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.lower().startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, memory, OS, Python and package versions."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "os": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _version(name) for name in PACKAGES},
    }


def paired_ratios(ours: Result, other: Result) -> list[float]:
    """websession's rate over the other's, round by round (they ran back to back)."""
    return [o / p for o, p in zip(ours.rates, other.rates, strict=True)]


class Collector:
    """The scenarios of one bench run, written as one JSON file."""

    def __init__(self, bench: str, command: str, settings: Mapping[str, Any]) -> None:
        self.bench = bench
        self.command = command
        self.settings = dict(settings)
        self.started = dt.datetime.now(dt.UTC)
        self.extra: dict[str, Any] = {}
        self.scenarios: list[dict[str, Any]] = []

    def throughput(
        self,
        scenario_id: str,
        title: str,
        ours: Result,
        others: Sequence[tuple[Result, float | None]],
        *,
        round_trips: Mapping[str, int] | None = None,
        notes: str = "",
    ) -> None:
        """websession's rounds beside each other series, with the goal of each comparison.

        ``round_trips`` maps series names to store round trips per request, where the
        bench knows them.
        """
        trips = round_trips or {}

        def series(result: Result, is_ours: bool) -> dict[str, Any]:
            return {"name": result.name, "rates": list(result.rates), "ours": is_ours,
                    "round_trips": trips.get(result.name)}

        self.scenarios.append({
            "id": scenario_id,
            "title": title,
            "kind": "throughput",
            "unit": "req/s",
            "notes": notes,
            "series": [series(ours, True), *(series(r, False) for r, _ in others)],
            "ratios": [
                {"against": other.name, "ratios": paired_ratios(ours, other), "goal": goal}
                for other, goal in others
            ],
        })

    def alone(self, scenario_id: str, title: str, result: Result, *, notes: str = "") -> None:
        """A websession series with no peer."""
        self.throughput(scenario_id, title, result, [], notes=notes)

    def latency(self, scenario_id: str, title: str, rows: Iterable[Mapping[str, Any]],
                *, notes: str = "") -> None:
        """Throughput and latency percentiles under concurrency."""
        self.scenarios.append({"id": scenario_id, "title": title, "kind": "latency",
                               "notes": notes, "series": [dict(row) for row in rows]})

    def gc(self, store: str, expired: int, live: int, seconds: float, *,
           scenario_id: str = "gc", title: str = "GC time against expired sessions") -> None:
        """One timed GC pass; points of one scenario accumulate."""
        for scenario in self.scenarios:
            if scenario["id"] == scenario_id:
                break
        else:
            scenario = {"id": scenario_id, "title": title, "kind": "gc", "notes": "",
                        "points": []}
            self.scenarios.append(scenario)
        scenario["points"].append(
            {"store": store, "expired": expired, "live": live, "seconds": seconds})

    def keys_kept(self, scenario_id: str, title: str, requests: int,
                  rows: Iterable[Mapping[str, Any]], *, notes: str = "") -> None:
        """How many of ``requests`` concurrent keys each peer kept, run by run."""
        self.scenarios.append({"id": scenario_id, "title": title, "kind": "keys_kept",
                               "requests": requests, "notes": notes,
                               "rows": [dict(row) for row in rows]})

    def operations(self, scenario_id: str, title: str, rows: Iterable[Mapping[str, Any]],
                   *, notes: str = "") -> None:
        """Figures of operations (migrate, list, revoke): ``{name, value, unit, note}``."""
        self.scenarios.append({"id": scenario_id, "title": title, "kind": "operations",
                               "notes": notes, "rows": [dict(row) for row in rows]})

    def as_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {
            "bench": self.bench,
            "command": self.command,
            "settings": self.settings,
            "started": self.started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "extra": self.extra,
            "scenarios": self.scenarios,
        }

    def write(self, folder: Path | None = None) -> Path:
        """Write ``<folder>/<bench>.json`` (folder created if needed); return its path."""
        target = results_dir(folder)
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{self.bench}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.as_dict(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)
        print(f"results: {path}")
        return path

