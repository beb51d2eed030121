"""``IngestResult``: an ingest run as ``components.common.publish`` reads it (its summary is
what ``core.run`` returns; ingest writes no report)."""

from __future__ import annotations

from dataclasses import dataclass

METRIC_KEYS = ("rows_read", "rows_written", "rows_quarantined", "bytes_read", "seconds")


@dataclass(frozen=True)
class IngestResult:
    data: dict  # core.run's summary

    def summary(self) -> dict:
        return dict(self.data)

    def metrics(self) -> dict[str, float]:
        """rows_read, rows_written, rows_quarantined, bytes_read, seconds: the kfp Metrics."""
        return {key: self.data[key] for key in METRIC_KEYS}
