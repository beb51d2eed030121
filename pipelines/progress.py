"""A running step's progress, read from the lines its task prints: tune's trial i/N, the
running trial's epoch, the best validation RMSE so far and an ETA; train's epoch and ETA.

``StepProgress.feed(line)`` reads one line; ``text()`` is the step line's note. The line
formats are the tasks' own (docs/tune.md, docs/train.md); see docs/local.md#the-console."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field

# What the tasks print as they go (their log lines; docs/tune.md, docs/train.md):
#   tune: [worker I: ]trial N COMPLETE|PRUNED|FAIL: validation RMSE V after E epoch(s); {...}
#   tune: [worker I: ]trial N epoch E/EE: train RMSE ..., validation RMSE V ...
#   train: epoch E/EE: train RMSE ..., validation RMSE V (best), R rows/s
_WORKER = r"(?:worker \d+: )?"
TRIAL_DONE = re.compile(
    rf"(?:^|[\s:\]])tune: {_WORKER}trial (?P<trial>\d+) (?P<state>COMPLETE|PRUNED|FAIL): "
    r"validation RMSE (?P<value>\S+)"
)
TRIAL_EPOCH = re.compile(
    rf"(?:^|[\s:\]])tune: {_WORKER}trial (?P<trial>\d+):? epoch (?P<epoch>\d+)/(?P<epochs>\d+)\b"
    r"(?:.*?validation RMSE (?P<value>[-+\w.]+))?"
)
TRAIN_EPOCH = re.compile(
    r"(?:^|[\s:\]])train: epoch (?P<epoch>\d+)/(?P<epochs>\d+):(?:.*?validation RMSE (?P<value>[-+\w.]+))?"
)


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: an ETA or an elapsed time at a glance."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class StepProgress:
    """A running step's progress, read from its log lines: tune's trials (``total`` of them) and
    their epochs, train's epochs; ``text()`` is the step line's note (with an ETA)."""

    step: str
    total: int | None = None  # tune: the trials to run (fareflow run's --tune-trials)
    started: float = field(default_factory=time.monotonic)
    done: int = 0  # tune: finished trials
    states: dict[str, int] = field(default_factory=dict)
    best: float | None = None  # tune: best completed validation RMSE; train: best so far
    epoch: int = 0  # the running trial's (tune) or the run's (train) last finished epoch
    epochs: int | None = None
    value: float | None = None  # the last epoch's validation RMSE

    def feed(self, line: str) -> bool:
        """Read one log line; True when it moved the progress on."""
        if self.step == "tune":
            m = TRIAL_DONE.search(line)
            if m:
                self.done += 1
                self.states[m["state"]] = self.states.get(m["state"], 0) + 1
                value = _number(m["value"])
                if m["state"] == "COMPLETE" and value is not None:
                    self.best = value if self.best is None else min(self.best, value)
                self.epoch, self.value = 0, None
                return True
            m = TRIAL_EPOCH.search(line)
        elif self.step == "train":
            m = TRAIN_EPOCH.search(line)
        else:
            return False
        if not m:
            return False
        self.epoch, self.epochs, self.value = int(m["epoch"]), int(m["epochs"]), _number(m["value"])
        if self.step == "train" and self.value is not None:
            self.best = self.value if self.best is None else min(self.best, self.value)
        return True

    def fraction(self) -> float | None:
        """How much of the step is done, 0..1 (None: nothing to tell yet)."""
        within = self.epoch / self.epochs if self.epochs else 0.0
        if self.step == "tune":
            if not self.total:
                return None
            return min(1.0, (self.done + within) / self.total)
        return within if self.epochs else None

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the pace so far (pruning and early stopping can only shorten it)."""
        f = self.fraction()
        if not f:
            return None
        elapsed = (time.monotonic() if now is None else now) - self.started
        return elapsed * (1 - f) / f

    def text(self, now: float | None = None) -> str:
        parts = []
        if self.step == "tune":
            if self.total:
                current = min(self.done + 1, self.total)
                parts.append(
                    f"{self.done}/{self.total} trials done"
                    if self.done >= self.total
                    else f"trial {current}/{self.total}"
                )
            else:
                parts.append(f"{self.done} trial(s) done")
        if self.epochs and self.epoch:
            parts.append(f"epoch {self.epoch}/{self.epochs}")
        if self.step == "tune" and self.states.get("PRUNED"):
            parts.append(f"{self.states['PRUNED']} pruned")
        if self.best is not None:
            parts.append(f"best {self.best:.4f}")
        eta = self.eta(now)
        if eta is not None and (self.fraction() or 0) < 1:
            parts.append(f"ETA {duration(eta)}")
        return ", ".join(parts) if (self.done or self.epochs) else ""
