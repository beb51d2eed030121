"""``QualityResult`` (what a run returns; the result protocol of ``components.common.publish``)
and the gate's failure."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from components.common.errors import UserError

from .rules import RuleSet


class GateFailed(UserError):
    """The share of rejected rows exceeded a threshold: the pipeline must stop here."""

    exit_code = 3


@dataclass
class QualityResult:
    counts: dict  # the run's counts and percentages (unrounded): summary() and metrics() read them
    stats: dict  # population stats.json content
    partials: list[dict]
    raw_profile: dict
    clean_profile: dict
    histograms: dict
    reservoir: pa.Table  # CLEAN_SCHEMA rows (uniform sample of the clean rows)
    violations: list[dict]
    ruleset: RuleSet

    def summary(self) -> dict:
        """The task's output and ``--summary-json``: the counts, percentages by rule rounded to
        4 places (as in the metrics)."""
        pct = self.counts["rejected_pct_by_rule"]
        return {k: v for k, v in self.counts.items() if k != "rejected_pct_by_rule"} | {
            "rejected_pct_by_rule": {k: round(v, 4) for k, v in pct.items()}
        }

    def metrics(self) -> dict[str, float]:
        """rows_in, rows_clean, rows_rejected, reject_pct_total and reject_pct_<rule> per rule."""
        c = self.counts
        values: dict[str, float] = {
            "rows_in": float(c["rows_in"]),
            "rows_clean": float(c["rows_clean"]),
            "rows_rejected": float(c["rows_rejected"]),
            "reject_pct_total": round(c["rejected_pct"], 4),
        }
        for name, pct in c["rejected_pct_by_rule"].items():
            values[f"reject_pct_{name}"] = round(pct, 4)
        return values

    @property
    def gate_passed(self) -> bool:
        return not self.violations

    def gate_message(self) -> str:
        parts = [
            f"{v['rule']} rejected {v['observed_pct']:.2f}% of rows (allowed {v['allowed_pct']:.2f}%)"
            for v in self.violations
        ]
        return f"quality gate failed: {'; '.join(parts)}"

    def check_gate(self) -> None:
        if self.violations:
            raise GateFailed(self.gate_message())


def evaluate_gate(ruleset: RuleSet, rows_in: int, by_rule: dict[str, int]) -> list[dict]:
    """Every threshold exceeded: [{"rule", "observed_pct", "allowed_pct", "rows"}]."""
    violations = []
    pct = (lambda n: 100.0 * n / rows_in) if rows_in else (lambda n: 0.0)
    for rule in ruleset.rules:
        n = by_rule.get(rule.name, 0)
        if rule.max_reject_pct is not None and pct(n) > rule.max_reject_pct:
            violations.append(
                {"rule": rule.name, "observed_pct": pct(n), "allowed_pct": rule.max_reject_pct, "rows": n}
            )
    total = sum(by_rule.values())
    if ruleset.max_total_reject_pct is not None and pct(total) > ruleset.max_total_reject_pct:
        violations.append(
            {
                "rule": "total",
                "observed_pct": pct(total),
                "allowed_pct": ruleset.max_total_reject_pct,
                "rows": total,
            }
        )
    return violations
