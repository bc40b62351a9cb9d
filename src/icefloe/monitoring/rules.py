"""Alert rules (pure): what a rule may say, and how its state moves.

A rule watches one figure of a deployment's window (``psi`` of a feature, ``accuracy``,
``latency_p99_ms``...) against a threshold. Its state is ``OK`` until the condition holds
(``FIRING``); once it no longer holds it is ``RESOLVED`` (and ``FIRING`` again if it holds
again). A window with fewer samples than the rule's minimum, or no value, changes nothing.
No state lasts less than the rule's cooldown: a change that comes sooner waits for the next
evaluation after it, so a figure hovering at the threshold cannot flap. Each change is one
notification.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from icefloe.errors import InvalidInputError
from icefloe.monitoring.windows import parse_window

OK, FIRING, RESOLVED = "OK", "FIRING", "RESOLVED"
WINDOW_METRICS = frozenset({"requests", "error_rate", "latency_p50_ms", "latency_p99_ms",
                            "prediction_psi", "label_coverage", "accuracy", "auc",
                            "precision", "recall", "f1"})
FEATURE_METRICS = frozenset({"psi", "ks", "null_share", "js_distance", "unseen_share"})
COMPARISONS = {">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}
CHANNELS = ("webhook", "email")
EMAIL = re.compile(r"[^@\s,;:<>()\[\]\"']{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
MAX_COOLDOWN_S = 30 * 86_400


@dataclass(frozen=True)
class RuleSpec:
    """What a rule watches and where it reports."""

    metric: str
    comparison: str
    threshold: float
    feature: str = ""
    window: str = "1h"
    min_samples: int = 100
    cooldown_s: int = 0
    channel: str = "webhook"
    target: str = ""  # the webhook URL, or the e-mail address

    def check(self) -> RuleSpec:
        """Return the spec if it is valid.

        Raises:
            InvalidInputError: Naming the field and what it may be.
        """
        if self.metric not in WINDOW_METRICS | FEATURE_METRICS:
            known = ", ".join(sorted(WINDOW_METRICS | FEATURE_METRICS))
            raise InvalidInputError(f"metric {self.metric!r} is not one of {known}")
        if self.metric in FEATURE_METRICS and not self.feature:
            raise InvalidInputError(f"metric {self.metric!r} needs a feature")
        if self.metric in WINDOW_METRICS and self.feature:
            raise InvalidInputError(f"metric {self.metric!r} is of the whole window; "
                                    "give no feature")
        if len(self.feature) > 255:
            raise InvalidInputError("feature is longer than 255 characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in self.feature):
            raise InvalidInputError("feature holds a control character")
        if self.comparison not in COMPARISONS:
            raise InvalidInputError(f"comparison {self.comparison!r} is not one of "
                                    f"{', '.join(COMPARISONS)}")
        if not math.isfinite(self.threshold):
            raise InvalidInputError("threshold must be a finite number")
        parse_window(self.window)
        if not 1 <= self.min_samples <= 10_000_000:
            raise InvalidInputError("min_samples must be from 1 to 10,000,000")
        if not 0 <= self.cooldown_s <= MAX_COOLDOWN_S:
            raise InvalidInputError(f"cooldown_s must be from 0 to {MAX_COOLDOWN_S}")
        if self.channel not in CHANNELS:
            raise InvalidInputError(f"channel {self.channel!r} is not one of "
                                    f"{', '.join(CHANNELS)}")
        if self.channel == "email" and not EMAIL.fullmatch(self.target):
            raise InvalidInputError(f"target {self.target!r} is not an e-mail address")
        return self


def holds(comparison: str, value: float, threshold: float) -> bool:
    """Whether ``value comparison threshold``."""
    return bool(COMPARISONS[comparison](float(value), float(threshold)))


def next_state(state: str, since: datetime, now: datetime, spec: RuleSpec,
               value: float | None, samples: int) -> str | None:
    """The state a rule moves to, or None if it stays (see the module)."""
    # The request count is its own evidence: no traffic at all is what a low-traffic rule
    # is for.
    if value is None or (samples < spec.min_samples and spec.metric != "requests"):
        return None
    if (now - since).total_seconds() < spec.cooldown_s:
        return None
    if holds(spec.comparison, value, spec.threshold):
        return FIRING if state != FIRING else None
    return RESOLVED if state == FIRING else None


def figure_of(figures: list[dict[str, Any]], metric: str, feature: str
              ) -> tuple[float | None, int]:
    """The value and samples of one figure of a window (None, 0 when it is absent)."""
    for f in figures:
        if f["metric"] == metric and f["feature"] == feature:
            return f["value"], int(f["samples"])
    return None, 0
