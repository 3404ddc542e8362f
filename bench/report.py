"""Turn the benches' JSON results into ``docs/benchmarks.md``, its charts, and README's table.

``python -m bench.report`` (the last step of ``make bench``) reads every ``*.json`` in the
results folder (see :mod:`bench.results`), draws one SVG chart per scenario with
matplotlib under ``docs/benchmarks/``, writes ``docs/benchmarks.md``, and replaces the
block between the ``bench:begin`` and ``bench:end`` markers in README.md with a summary
table made from the same figures. Nothing is measured here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .results import add_argument, results_dir

__all__ = ["Report", "load", "main", "render", "replace_block"]

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"
#: The order the benches appear in.
BENCH_ORDER = ("keys", "memory", "storage", "redis", "sql", "fastapi")
BENCH_TITLES = {
    "keys": "Concurrent requests on one session",
    "memory": "In memory: WSGI and ASGI (`python -m bench`)",
    "storage": "File, cookie and SQLite stores (`python -m bench.storage_bench`)",
    "redis": "Redis (`python -m bench.redis_bench`)",
    "sql": "MariaDB and PostgreSQL (`python -m bench.sql_bench`)",
    "fastapi": "FastAPI on Redis (`python -m bench.fastapi_bench`)",
    "ops_bench": "Operations: migrate, list, revoke (`python -m bench.ops_bench`)",
}
OURS = "#1a64c8"
PEER = "#8b949e"
MISSED = "#d1242f"
MET = "#1a7f37"

Doc = dict[str, Any]
# Typeset signs, named so the source stays ASCII.
TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"


@dataclass
class Report:
    """The loaded results, one document per bench, in :data:`BENCH_ORDER`."""

    docs: list[Doc]

    def bench(self, name: str) -> Doc | None:
        return next((d for d in self.docs if d["bench"] == name), None)

    def scenarios(self, kind: str | None = None) -> Iterable[tuple[Doc, Doc]]:
        for doc in self.docs:
            for scenario in doc["scenarios"]:
                if kind is None or scenario["kind"] == kind:
                    yield doc, scenario


def load(folder: Path) -> Report:
    """Every bench's results in ``folder``; an error if there are none."""
    docs = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]
    if not docs:
        raise SystemExit(f"no results in {folder}: run the benches first (make bench)")
    order = {name: i for i, name in enumerate(BENCH_ORDER)}
    docs.sort(key=lambda d: order.get(d["bench"], len(order)))
    return Report(docs)


# -- numbers --------------------------------------------------------------------------------


def rate(value: float) -> str:
    """Requests per second, short: 111k, 3.2k, 850."""
    if value >= 10_000:
        return f"{value / 1000:,.0f}k"
    if value >= 1_000:
        return f"{value / 1000:.1f}k"
    return f"{value:,.0f}"


def ratio(values: Sequence[float]) -> str:
    """A median ratio with the range of the rounds, as ``2.50x (2.30-2.70)`` with typeset
    signs."""
    return f"{statistics.median(values):.2f}{TIMES} ({min(values):.2f}{DASH}{max(values):.2f})"


def _series(scenario: Doc, name: str) -> Doc:
    return next(s for s in scenario["series"] if s["name"] == name)


def _ours(scenario: Doc) -> Doc:
    return next(s for s in scenario["series"] if s["ours"])


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


# -- charts ---------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "svg.fonttype": "none",  # text stays text: smaller files, selectable labels
        "svg.hashsalt": "websession-bench",  # stable ids, so unchanged charts diff clean
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 10,
        "axes.titleweight": "bold",
    })
    return plt


def _save(fig: Any, path: Path) -> None:
    fig.savefig(path, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)


def _wrap(text: str, width: int = 34) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)


def chart_throughput(scenario: Doc, path: Path) -> None:
    """One row per series: every round a dot, the median a bar, the range a line."""
    plt = _pyplot()
    series = scenario["series"]
    ratios = {r["against"]: r for r in scenario["ratios"]}
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(series) + 1.0))
    top = max(max(s["rates"]) for s in series)
    for row, s in enumerate(series):
        y = len(series) - 1 - row
        rates = s["rates"]
        color = OURS if s["ours"] else PEER
        med = statistics.median(rates)
        ax.barh(y, med, height=0.55, color=color, alpha=0.35)
        ax.plot([min(rates), max(rates)], [y, y], color=color, linewidth=1.5)
        spread = [y + 0.18 * ((i % 5) - 2) / 2 for i in range(len(rates))]
        ax.scatter(rates, spread, s=9, color=color, zorder=3)
        label = f"{rate(med)} req/s"
        if s.get("round_trips") is not None:
            trips = s["round_trips"]
            label += f", {trips} round trip{'s' if trips != 1 else ''}"
        r = ratios.get(s["name"])
        if r is not None:
            label += f"  ·  websession {ratio(r['ratios'])}"
            if r["goal"] is not None:
                met = statistics.median(r["ratios"]) >= r["goal"]
                label += f", goal ≥ {r['goal']:g}{TIMES} {'met' if met else 'MISSED'}"
        ax.text(top * 1.02, y, label, va="center", fontsize=8)
    ax.set_yticks(range(len(series)))
    ax.set_yticklabels([_wrap(s["name"]) for s in reversed(series)])
    ax.set_xlim(0, top * 1.02)
    ax.set_xlabel("requests per second (each dot a timed round; bar: median)")
    ax.set_title(scenario["title"], loc="left")
    _save(fig, path)


def chart_keys(scenario: Doc, path: Path) -> None:
    """Keys kept by each peer: the median of its runs, the range as a whisker."""
    plt = _pyplot()
    rows = scenario["rows"]
    total = scenario["requests"]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1.2))
    for i, row in enumerate(rows):
        y = len(rows) - 1 - i
        kept = row["kept"]
        med = statistics.median(kept)
        color = OURS if row["ours"] else PEER
        ax.barh(y, med, height=0.65, color=color)
        if min(kept) != max(kept):
            ax.plot([min(kept), max(kept)], [y, y], color="black", linewidth=1)
        ax.text(med + total * 0.01, y, f"{med:g}", va="center", fontsize=8)
    ax.axvline(total, color="black", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([r["name"] for r in reversed(rows)], fontsize=8)
    ax.set_xlim(0, total * 1.08)
    ax.set_xlabel(f"keys kept of {total} (median of the runs; whisker: fewest to most)")
    ax.set_title(f"{total} concurrent requests on one session, each setting its own key",
                 loc="left")
    _save(fig, path)


def chart_latency(scenario: Doc, path: Path) -> None:
    """Throughput per round, and p50/p99 latency, under concurrency."""
    plt = _pyplot()
    series = scenario["series"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 0.6 * len(series) + 1.3),
                                      sharey=True)
    for i, s in enumerate(series):
        y = len(series) - 1 - i
        color = OURS if s["ours"] else PEER
        rates = s["rates"]
        left.barh(y, statistics.median(rates), height=0.55, color=color, alpha=0.35)
        left.plot([min(rates), max(rates)], [y, y], color=color, linewidth=1.5)
        left.scatter(rates, [y] * len(rates), s=9, color=color, zorder=3)
        right.barh(y + 0.16, s["p50_ms"], height=0.3, color=color, alpha=0.5)
        right.barh(y - 0.16, s["p99_ms"], height=0.3, color=color)
        right.text(s["p50_ms"], y + 0.16, f" p50 {s['p50_ms']:.1f} ms", va="center",
                   fontsize=8)
        right.text(s["p99_ms"], y - 0.16, f" p99 {s['p99_ms']:.1f} ms", va="center",
                   fontsize=8)
    left.set_yticks(range(len(series)))
    left.set_yticklabels([_wrap(s["name"], 26) for s in reversed(series)])
    left.set_xlabel("requests per second (dots: rounds)")
    right.set_xlabel("latency per request, ms")
    right.set_xlim(0, max(s["p99_ms"] for s in series) * 1.5)
    left.set_title(scenario["title"], loc="left")
    _save(fig, path)


def chart_gc(points: Sequence[Doc], path: Path) -> None:
    """Seconds for one GC pass against the number of expired sessions, per store."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    stores: dict[str, list[Doc]] = {}
    for p in points:
        stores.setdefault(p["store"], []).append(p)
    markers = "osD^v<>"
    for i, (store, pts) in enumerate(stores.items()):
        pts = sorted(pts, key=lambda p: p["expired"])
        xs = [p["expired"] for p in pts]
        ys = [p["seconds"] for p in pts]
        ax.plot(xs, ys, marker=markers[i % len(markers)], label=store)
        last = pts[-1]
        ax.annotate(f"{last['seconds']:.2g} s", (last["expired"], last["seconds"]),
                    textcoords="offset points", xytext=(6, 0), va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("expired sessions removed by one GC pass (1,000 live ones beside them)")
    ax.set_ylabel("seconds")
    ax.set_title("GC time against the number of expired sessions", loc="left")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.1, 0.5))
    _save(fig, path)


def chart_round_trips(rows: Sequence[tuple[str, str, int, bool]], path: Path) -> None:
    """Store round trips per request, as each bench states them."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1.0))
    for i, (_, _, trips, ours) in enumerate(rows):
        y = len(rows) - 1 - i
        ax.barh(y, trips, height=0.6, color=OURS if ours else PEER)
        ax.text(trips + 0.03, y, str(trips), va="center", fontsize=8)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{scenario}: {name}" for scenario, name, _, _ in reversed(rows)],
                       fontsize=8)
    ax.set_xticks([0, 1, 2, 3])
    ax.set_xlim(0, 3)
    ax.set_xlabel("store round trips per request")
    ax.set_title("Round trips per request, where the bench knows them", loc="left")
    _save(fig, path)


def chart_ratios(rows: Sequence[tuple[str, Sequence[float], float]], path: Path) -> None:
    """Every comparison with a goal: the median ratio, its range over rounds, the goal."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.1))
    for i, (_, values, goal) in enumerate(rows):
        y = len(rows) - 1 - i
        med = statistics.median(values)
        color = MET if med >= goal else MISSED
        ax.plot([min(values), max(values)], [y, y], color=color, linewidth=2, alpha=0.5)
        ax.scatter([med], [y], color=color, zorder=3, s=22)
        ax.scatter([goal], [y], marker="|", color="black", s=120, zorder=2)
        ax.text(max(values) * 1.04, y, f"{med:.2f}{TIMES}", va="center", fontsize=8)
    ax.axvline(1.0, color="black", linewidth=0.8, alpha=0.4)
    ax.set_xscale("log")
    ticks = [0.5, 0.75, 1, 1.5, 2, 3, 5, 8]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}{TIMES}" for t in ticks])
    low = min(min(values) for _, values, _ in rows)
    high = max(max(values) for _, values, _ in rows)
    ax.set_xlim(min(0.5, low * 0.9), max(10.0, high * 1.4))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([label for label, _, _ in reversed(rows)], fontsize=8)
    ax.set_xlabel("websession ÷ the other, per round (dot: median; line: range; | goal)")
    ax.set_title("websession against each peer and raw driver loop", loc="left")
    _save(fig, path)


# -- markdown -------------------------------------------------------------------------------


def _when(report: Report) -> tuple[str, str]:
    starts = [dt.datetime.fromisoformat(d["started"]) for d in report.docs]
    ends = [dt.datetime.fromisoformat(d["finished"]) for d in report.docs]
    first, last = min(starts), max(ends)
    day = first.strftime("%Y-%m-%d")
    return day, f"{day} {first:%H:%M}{DASH}{last:%H:%M} UTC"


def _quick(report: Report) -> list[str]:
    return [d["bench"] for d in report.docs if d["settings"].get("quick")]


def _machine_table(report: Report) -> list[str]:
    m = report.docs[0]["machine"]
    _, when = _when(report)
    servers = []
    redis = report.bench("redis")
    if redis and redis["extra"].get("redis_server"):
        servers.append(f"Redis {redis['extra']['redis_server']}")
    sql = report.bench("sql")
    if sql:
        servers += [v for k, v in sql["extra"].items() if k.endswith("_driver")]
        servers += [f"{k.removesuffix('_skipped')} skipped ({v})"
                    for k, v in sql["extra"].items() if k.endswith("_skipped")]
    storage = report.bench("storage")
    lines = [
        "| | |",
        "|---|---|",
        f"| run | {when} |",
        f"| CPU | {m['cpu']}, {m['cores']} cores |",
        f"| memory | {m['memory_gib']} GiB |",
        f"| OS | {m['os']} |",
        f"| Python | {m['python']} |",
    ]
    if storage and storage["extra"].get("filesystem"):
        lines.append(f"| scratch filesystem (file store) | {storage['extra']['filesystem']} |")
    if servers:
        lines.append(f"| servers and drivers | {', '.join(servers)} |")
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    lines.append(f"| packages | {packages} |")
    return lines


def _throughput_table(scenario: Doc) -> list[str]:
    ratios = {r["against"]: r for r in scenario["ratios"]}
    lines = [f"| series | median req/s | slowest{DASH}fastest round | rounds | round trips | "
             "websession ÷ it, per round: median (range) | goal |",
             "|---|---:|---:|---:|---:|---|---|"]
    for s in scenario["series"]:
        rates = s["rates"]
        r = ratios.get(s["name"])
        cmp_, goal = "", ""
        if r is not None:
            cmp_ = ratio(r["ratios"])
            if r["goal"] is not None:
                met = statistics.median(r["ratios"]) >= r["goal"]
                goal = f"≥ {r['goal']:g}{TIMES} {'✓' if met else '✗ missed'}"
            else:
                goal = "none (explains the figures)"
        name = f"**{s['name']}**" if s["ours"] else s["name"]
        trips = "" if s.get("round_trips") is None else str(s["round_trips"])
        lines.append(f"| {name} | {statistics.median(rates):,.0f} | {min(rates):,.0f}{DASH}"
                     f"{max(rates):,.0f} | {len(rates)} | {trips} | {cmp_} | {goal} |")
    return lines


def _keys_table(scenario: Doc) -> list[str]:
    total = scenario["requests"]
    lines = ["| library | framework | store | keys kept of " f"{total} (each run) |",
             "|---|---|---|---|"]
    for row in scenario["rows"]:
        kept = ", ".join(str(k) for k in row["kept"])
        lib = f"**{row['library']}**" if row["ours"] else row["library"]
        lines.append(f"| {lib} | {row['framework']} | {row['store']} | {kept} |")
    return lines


def _gc_points(report: Report) -> list[Doc]:
    return [p for _, s in report.scenarios("gc") for p in s["points"]]


def _gc_table(points: Sequence[Doc]) -> list[str]:
    lines = ["| store | expired sessions | live beside them | one GC pass | removed per second |",
             "|---|---:|---:|---:|---:|"]
    for p in sorted(points, key=lambda p: (p["store"], p["expired"])):
        lines.append(f"| {p['store']} | {p['expired']:,} | {p['live']:,} | "
                     f"{p['seconds']:.3f} s | {p['expired'] / p['seconds']:,.0f} |")
    return lines


def _round_trip_rows(report: Report) -> list[tuple[str, str, int, bool]]:
    rows = []
    for _, s in report.scenarios("throughput"):
        for series in s["series"]:
            if series.get("round_trips") is not None:
                rows.append((s["title"].removeprefix("Redis: "), series["name"],
                             series["round_trips"], series["ours"]))
    return rows


def _ratio_rows(report: Report) -> list[tuple[str, Sequence[float], float]]:
    rows = []
    for _, s in report.scenarios("throughput"):
        for r in s["ratios"]:
            if r["goal"] is not None:
                rows.append((_wrap(f"{s['title']}: vs {r['against']}", 70), r["ratios"],
                             r["goal"]))
    return rows


def summary_table(report: Report) -> list[str]:
    """The README's table: one row per comparison, websession's median beside the other's."""
    lines = ["| benchmark | websession | other | websession ÷ other: median (range over "
             "rounds) | goal |", "|---|---:|---|---|---|"]
    for _, s in report.scenarios("throughput"):
        ours = _ours(s)
        mine = statistics.median(ours["rates"])
        if not s["ratios"]:
            lines.append(f"| {s['title']} | {rate(mine)} req/s | — | | |")
        for r in s["ratios"]:
            other = _series(s, r["against"])
            goal = "" if r["goal"] is None else (
                f"≥ {r['goal']:g}{TIMES} " + ("✓" if statistics.median(r["ratios"]) >= r["goal"]
                                        else "✗ missed"))
            lines.append(f"| {s['title']} | {rate(mine)} req/s | {r['against']} "
                         f"{rate(statistics.median(other['rates']))} | {ratio(r['ratios'])} "
                         f"| {goal} |")
    for _, s in report.scenarios("latency"):
        ours = _ours(s)

        def cell(x: Doc) -> str:
            return (f"{rate(statistics.median(x['rates']))} req/s, p50 {x['p50_ms']:.1f} ms, "
                    f"p99 {x['p99_ms']:.1f} ms")

        for other in (x for x in s["series"] if not x["ours"]):
            # Rounds alternated between the two, so their rates pair up as elsewhere.
            paired = [o / r for o, r in zip(ours["rates"], other["rates"], strict=True)]
            lines.append(f"| {s['title']} | {cell(ours)} | {other['name']}: {cell(other)} | "
                         f"{ratio(paired)} | |")
    points = _gc_points(report)
    if points:
        biggest = max(p["expired"] for p in points)
        cells = ", ".join(f"{p['store']} {p['seconds']:.2g} s" for p in points
                          if p["expired"] == biggest)
        lines.append(f"| GC of {biggest:,} expired sessions | {cells} | | | |")
    return lines


def keys_summary(report: Report) -> list[str]:
    """One line per library: the fewest and most keys it kept over its stores and runs."""
    lines = []
    for _, s in report.scenarios("keys_kept"):
        total = s["requests"]
        libraries: dict[str, list[Doc]] = {}
        for row in s["rows"]:
            libraries.setdefault(row["library"], []).append(row)
        lines += [f"| library | keys kept of {total} concurrent | stores |", "|---|---|---|"]
        for library, rows in libraries.items():
            server = [r for r in rows if "cookie" not in r["store"].lower()]
            cookie = [r for r in rows if "cookie" in r["store"].lower()]
            for group, label in ((server, "server-side"), (cookie, "in a cookie")):
                if not group:
                    continue
                kept = [k for r in group for k in r["kept"]]
                span = f"{min(kept)}" if min(kept) == max(kept) else f"{min(kept)}{DASH}{max(kept)}"
                stores = ", ".join(dict.fromkeys(r["store"] for r in group))  # WSGI and ASGI
                name = f"**{library}**" if group[0]["ours"] else library
                lines.append(f"| {name} ({label}) | {span} | {stores} |")
    return lines


def render(report: Report, docs_dir: Path) -> tuple[str, str]:
    """Draw the charts into ``docs_dir/benchmarks``; return (benchmarks.md, README block)."""
    charts = docs_dir / "benchmarks"
    charts.mkdir(parents=True, exist_ok=True)
    for old in charts.glob("*.svg"):
        old.unlink()
    day, when = _when(report)
    quick = _quick(report)
    md = ["# Benchmarks", "",
          f"Generated by `make bench` (its last step, `python -m bench.report`) from the run "
          f"of {when}. Do not edit by hand: run `make bench` again.", ""]
    if quick:
        md += [f"> **Quick run** ({', '.join(quick)}): fewer rounds and requests than "
               "`make bench`; the figures are rougher.", ""]
    md += ["Each benchmark runs websession and the others side by side in one process, "
           "alternating them round by round. In the charts every dot is one timed round, "
           "the bar is the median round and the line joins the slowest and the fastest "
           "round. A ratio is the median of the per-round ratios (both sides of a round ran "
           "back to back, so a noisy moment on this shared machine slows both); its range "
           "is the lowest and highest of those per-round ratios.", "",
           "## The machine", "", *_machine_table(report), ""]

    ratio_rows = _ratio_rows(report)
    if ratio_rows:
        chart_ratios(ratio_rows, charts / "ratios.svg")
        md += ["## Overview", "", "![websession against each peer](benchmarks/ratios.svg)",
               "", *summary_table(report), ""]

    for doc in report.docs:
        md += [f"## {BENCH_TITLES.get(doc['bench'], doc['bench'])}", "",
               f"`{doc['command']}`; settings: "
               + ", ".join(f"{k} {v}" for k, v in doc["settings"].items()), ""]
        for scenario in doc["scenarios"]:
            kind = scenario["kind"]
            name = _slug(scenario["id"])
            if kind == "gc":
                continue  # all GC points share one chart, below
            md += [f"### {scenario['title']}", ""]
            if scenario.get("notes"):
                md += [scenario["notes"][0].upper() + scenario["notes"][1:] + ".", ""]
            if kind == "throughput":
                chart_throughput(scenario, charts / f"{name}.svg")
                md += [f"![{scenario['title']}](benchmarks/{name}.svg)", "",
                       *_throughput_table(scenario), ""]
            elif kind == "latency":
                chart_latency(scenario, charts / f"{name}.svg")
                md += [f"![{scenario['title']}](benchmarks/{name}.svg)", "",
                       f"| series | median req/s | slowest{DASH}fastest round | p50 | p99 |",
                       "|---|---:|---:|---:|---:|"]
                md += [f"| {s['name']} | {statistics.median(s['rates']):,.0f} | "
                       f"{min(s['rates']):,.0f}{DASH}{max(s['rates']):,.0f} | "
                       f"{s['p50_ms']:.2f} ms | {s['p99_ms']:.2f} ms |" for s in scenario["series"]]
                md.append("")
            elif kind == "operations":
                md += ["| operation | figure | |", "|---|---:|---|"]
                md += [f"| {row['name'].strip()} | {row['value']:,.1f} {row['unit']} | "
                       f"{row['note']} |" for row in scenario["rows"]]
                md.append("")
            elif kind == "keys_kept":
                chart_keys(scenario, charts / "keys-kept.svg")
                md += ["![keys kept](benchmarks/keys-kept.svg)", "", *_keys_table(scenario), ""]
        if doc["extra"].get("skipped"):
            md += ["Skipped: " + "; ".join(doc["extra"]["skipped"]) + ".", ""]

    trips = _round_trip_rows(report)
    if trips:
        chart_round_trips(trips, charts / "round-trips.svg")
        md += ["## Round trips per request", "",
               "As the Redis and SQL benches state them for the loops whose code they know "
               "(their own raw loops, and websession's documented one read, one write).", "",
               "![round trips](benchmarks/round-trips.svg)", ""]
    points = _gc_points(report)
    if points:
        chart_gc(points, charts / "gc.svg")
        md += ["## GC time against the number of expired sessions", "",
               "One `gc()` pass over the expired sessions, next to 1,000 live ones that must "
               "all survive. The memory, file and SQLite stores come from "
               "`python -m bench.storage_bench` (each count on a fresh store); MariaDB and "
               "PostgreSQL from `python -m bench.sql_bench`. Redis has nothing to collect: "
               "its keys expire by themselves.", "",
               "![GC time](benchmarks/gc.svg)", "", *_gc_table(points), ""]

    m = report.docs[0]["machine"]
    block = [BEGIN,
             f"Figures from `make bench` on {day} ({m['cpu']}, {m['cores']} cores, "
             f"{m['python']}; generated with the charts and the details in "
             "[docs/benchmarks.md](docs/benchmarks.md): do not edit this block by hand)."
             + (" **Quick run: rough figures.**" if quick else ""), ""]
    if report.bench("keys"):
        block += ["![keys kept by concurrent requests](docs/benchmarks/keys-kept.svg)", "",
                  *keys_summary(report), ""]
    if ratio_rows:
        block += ["![websession against each peer](docs/benchmarks/ratios.svg)", ""]
    block += [*summary_table(report), END]
    return "\n".join(md).rstrip() + "\n", "\n".join(block)


def replace_block(text: str, block: str) -> str:
    """``text`` with everything from :data:`BEGIN` to :data:`END` replaced by ``block``."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} block to replace")
    return text[:start] + block + text[end + len(END):]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Write docs/benchmarks.md, its charts and README's benchmark table from "
                    "the benches' JSON results.")
    add_argument(parser)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where to write")
    parser.add_argument("--readme", default=str(ROOT / "README.md"),
                        help="the README whose bench block to replace ('' to leave it)")
    args = parser.parse_args(argv)
    report = load(results_dir(args.results))
    markdown, block = render(report, args.docs)
    out = args.docs / "benchmarks.md"
    out.write_text(markdown, encoding="utf-8")
    print(f"wrote {out} and {len(list((args.docs / 'benchmarks').glob('*.svg')))} charts")
    if args.readme:
        readme = Path(args.readme)
        readme.write_text(replace_block(readme.read_text(encoding="utf-8"), block),
                          encoding="utf-8")
        print(f"updated the benchmark block of {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
