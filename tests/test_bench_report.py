"""``python -m bench.report``: results in, docs/benchmarks.md, charts and README table out.

Nothing is timed here: the results are made up, written through the same Collector the
benches use, so the report's reading of them is what is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench import report
from bench.results import Collector
from bench.runner import Result

README = """# project

intro

<!-- bench:begin -->
stale figures
<!-- bench:end -->

after
"""


def write_results(folder: Path) -> None:
    memory = Collector("memory", "python -m bench", {"rounds": 3, "quick": False})
    memory.throughput(
        "memory-wsgi", "WSGI read-modify-write, memory stores",
        Result("websession", [100.0, 110.0, 90.0]), [(Result("beaker", [50.0, 50.0, 60.0]), 2.0)],
    )
    memory.write(folder)
    redis = Collector("redis", "python -m bench.redis_bench", {"quick": True})
    redis.throughput(
        "redis-wsgi", "Redis: read-modify-write", Result("websession", [30.0, 32.0]),
        [(Result("raw", [40.0, 40.0]), 0.9), (Result("same commands", [35.0, 33.0]), None)],
        round_trips={"websession": 2, "raw": 2},
    )
    redis.latency("redis-concurrency", "Redis: 64 clients", [
        {"name": "websession", "ours": True, "rates": [10.0, 12.0], "p50_ms": 1.0,
         "p99_ms": 4.0},
        {"name": "raw", "ours": False, "rates": [20.0, 20.0], "p50_ms": 0.5, "p99_ms": 2.0},
    ])
    redis.extra["redis_server"] = "7.0.15"
    redis.write(folder)
    storage = Collector("storage", "python -m bench.storage_bench", {})
    for expired, seconds in ((1_000, 0.01), (10_000, 0.1)):
        storage.gc("sqlite", expired, 1_000, seconds)
    storage.write(folder)
    keys = Collector("keys", "python -m bench.keys_bench", {"requests": 20})
    keys.keys_kept("keys-kept", "Keys kept", 20, [
        {"name": "websession (WSGI, memory)", "library": "websession", "framework": "WSGI",
         "store": "memory", "ours": True, "kept": [20, 20]},
        {"name": "Beaker (WSGI, memory)", "library": "Beaker", "framework": "WSGI",
         "store": "memory", "ours": False, "kept": [1, 2]},
        {"name": "Django (Django, signed cookie)", "library": "Django", "framework": "Django",
         "store": "signed cookie", "ours": False, "kept": [1, 1]},
    ])
    keys.write(folder)


def test_report_writes_docs_charts_and_the_readme_block(tmp_path: Path) -> None:
    results, docs = tmp_path / "results", tmp_path / "docs"
    write_results(results)
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")

    assert report.main(["--results", str(results), "--docs", str(docs),
                        "--readme", str(readme)]) == 0

    markdown = (docs / "benchmarks.md").read_text(encoding="utf-8")
    charts = sorted(p.name for p in (docs / "benchmarks").glob("*.svg"))
    assert charts == ["gc.svg", "keys-kept.svg", "memory-wsgi.svg", "ratios.svg",
                      "redis-concurrency.svg", "redis-wsgi.svg", "round-trips.svg"]
    for chart in charts:  # every chart is linked from the page
        assert f"(benchmarks/{chart})" in markdown
        assert (docs / "benchmarks" / chart).read_text(encoding="utf-8").startswith("<?xml")
    # The machine, the versions and the date are printed.
    assert "| Python | CPython" in markdown
    assert "Redis 7.0.15" in markdown
    assert "websession " in markdown
    assert "**Quick run** (redis)" in markdown
    # Medians, the spread of the rounds, and the per-round ratios with their range.
    assert "| **websession** | 100 | 90\N{EN DASH}110 | 3 |" in markdown
    assert "2.00\N{MULTIPLICATION SIGN} (1.50\N{EN DASH}2.20)" in markdown
    assert "\N{GREATER-THAN OR EQUAL TO} 2\N{MULTIPLICATION SIGN} \N{CHECK MARK}" in markdown
    assert "\N{GREATER-THAN OR EQUAL TO} 0.9\N{MULTIPLICATION SIGN} \N{BALLOT X} missed" \
        in markdown
    assert "| 4.00 ms |" in markdown  # p99
    assert "| sqlite | 10,000 | 1,000 | 0.100 s | 100,000 |" in markdown
    assert "| **websession** | WSGI | memory | 20, 20 |" in markdown

    text = readme.read_text(encoding="utf-8")
    assert "stale figures" not in text
    assert text.startswith("# project\n\nintro\n\n<!-- bench:begin -->\nFigures from")
    assert text.endswith("<!-- bench:end -->\n\nafter\n")
    assert "![keys kept by concurrent requests](docs/benchmarks/keys-kept.svg)" in text
    assert "| **websession** (server-side) | 20 | memory |" in text
    assert "| Beaker (server-side) | 1\N{EN DASH}2 | memory |" in text
    assert "| Django (in a cookie) | 1 | signed cookie |" in text
    assert "| WSGI read-modify-write, memory stores | 100 req/s | beaker 50 |" in text


def test_report_refuses_a_readme_without_its_markers(tmp_path: Path) -> None:
    write_results(tmp_path / "results")
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="bench:begin"):
        report.main(["--results", str(tmp_path / "results"), "--docs", str(tmp_path / "docs"),
                     "--readme", str(readme)])
    assert readme.read_text(encoding="utf-8") == "# no markers\n"


def test_report_needs_results(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no results"):
        report.main(["--results", str(tmp_path), "--docs", str(tmp_path / "docs"),
                     "--readme", ""])


def test_results_are_plain_json(tmp_path: Path) -> None:
    write_results(tmp_path)
    doc = json.loads((tmp_path / "memory.json").read_text(encoding="utf-8"))
    assert doc["bench"] == "memory"
    assert doc["machine"]["cores"] >= 1
    (scenario,) = doc["scenarios"]
    assert scenario["series"][0] == {"name": "websession", "rates": [100.0, 110.0, 90.0],
                                     "ours": True, "round_trips": None}
    assert scenario["ratios"] == [{"against": "beaker", "ratios": [2.0, 2.2, 1.5], "goal": 2.0}]
