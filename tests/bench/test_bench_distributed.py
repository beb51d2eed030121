"""bench.bench_distributed at a tiny size: every configuration trains (Horovod over MPI where it is built with it, and over gloo) on the same splits with
the thread and backend settings they name, and the scaling lines are computed from their rows/s."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_distributed
from components.train import launch


@pytest.mark.slow
def test_run_records_every_configuration(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    rows = bench_distributed.run(tmp_path, 20_000, repeat=1, epochs=1, batch_sizes=(512,))
    assert {(r["case"], r["batch_size"]) for r in rows} == {(f"{bench_distributed.CASE} batch 512", 512)}
    mpi = launch.horovod_transport() == "mpi"  # the MPI row where this Horovod was built with MPI
    assert [r["impl"] for r in rows] == [
        "1 process x 1 thread", "1 process x all threads", "ddp 2 x 1 thread",
        *(["horovod-mpi 2 x 1 thread"] if mpi else []), "horovod-gloo 2 x 1 thread",
    ]  # fmt: skip
    assert [(r["world_size"], r["backend"]) for r in rows] == [
        (1, None), (1, None), (2, "gloo"), *([(2, "horovod-mpi")] if mpi else []), (2, "horovod-gloo"),
    ]  # fmt: skip
    assert len({r["rows"] for r in rows}) == 1 and rows[0]["rows"] > 0  # the same train split
    for r in rows:
        assert r["rows_per_s"] > 0 and r["peak_rss_mb"] > 0
        assert r["test_rmse"] == pytest.approx(rows[0]["test_rmse"], rel=bench_distributed.RMSE_TOLERANCE)
    lines = bench_distributed.summarize(rows)
    one, ddp, gloo = rows[0]["rows_per_s"], rows[2]["rows_per_s"], rows[-1]["rows_per_s"]
    case = f"{bench_distributed.CASE} batch 512"
    assert f"{case}: horovod-gloo 2 x 1 thread: {gloo / one:.2f}x the rows/s of 1 process x 1 thread" in lines
    assert f"{case}: horovod-gloo {gloo / ddp:.2f}x the rows/s of ddp" in lines
    if mpi:
        assert f"{case}: horovod-mpi {rows[3]['rows_per_s'] / ddp:.2f}x the rows/s of ddp" in lines


def test_an_inherited_thread_setting_is_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with pytest.raises(RuntimeError, match="unset OMP_NUM_THREADS"):
        bench_distributed.run(tmp_path, 1000, repeat=1)
