"""bench.bench_serve at a tiny size: both servers answer the same trips under load and the
records carry what ``bench.run`` prints, for v1 and for v2 against the baseline's v1."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_serve
from bench.common import ratios


@pytest.mark.slow
def test_run_records_both_servers(tmp_path: Path) -> None:
    rows = bench_serve.run(tmp_path, repeat=1, concurrency=(4,), trip_counts=(3,), seconds=0.5)
    assert [(r["case"], r["impl"]) for r in rows] == [
        ("serve v1 c4 x3", "fareflow"),
        ("serve v1 c4 x3", "fastapi"),
        ("serve v2 c4 x3", "fareflow"),
        ("serve v2 c4 x3", "fastapi"),
    ]
    for r in rows:
        assert r["rps"] > 0 and r["rows_per_s"] == pytest.approx(3 * r["rps"])
        assert 0 < r["p50_ms"] <= r["p99_ms"] and r["first_answer_s"] > 0 and r["peak_rss_mb"] > 50
        # the server's own CPU per request: more than nothing, less than the wall time of one
        # request on every core (the client runs in another process)
        assert 0 < r["cpu_ms_per_req"] < 16 * r["p99_ms"], r
    assert rows[1] | {"case": "x"} == rows[3] | {"case": "x"}  # v2 is compared with the baseline's v1 run
    assert [s["baseline"] for s in ratios(rows)] == ["fastapi", "fastapi"]
    lines = bench_serve.summarize(rows)
    assert [line.split(":")[0] for line in lines] == ["serve v1 c4 x3", "serve v2 c4 x3", "serve"]
    assert f"{rows[0]['rps']:,.0f} vs {rows[1]['rps']:,.0f} req/s" in lines[0]


def test_v1_and_v2_bodies_hold_the_same_trips() -> None:
    import json

    records = bench_serve.trips(5)
    v1 = json.loads(bench_serve.v1_body(records))["instances"]
    v2 = {t["name"]: t["data"] for t in json.loads(bench_serve.v2_body(records))["inputs"]}
    assert v1 == records and all(v2[k] == [r[k] for r in records] for k in records[0])
