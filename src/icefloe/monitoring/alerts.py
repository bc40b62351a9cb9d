"""Alert rules in the platform DB: made, listed, deleted, evaluated, notified.

Evaluation measures each deployment's windows once (for all its rules on that window),
moves each rule by :func:`icefloe.monitoring.rules.next_state`, records the change as an
event with a conditional update (the rule must still be in the state it was read in, so two
evaluators never both notify one change) and then sends it. An event whose delivery failed
keeps its error and is sent again by the next evaluation, up to :data:`MAX_ATTEMPTS`. The
webhook secret is sealed with the home's key; it is never returned, printed or logged.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update

from icefloe.config import Settings
from icefloe.errors import InvalidInputError, NotFoundError
from icefloe.governance import access
from icefloe.happenings import Actor, Happening, emit
from icefloe.jobs import vault
from icefloe.monitoring import mail, points
from icefloe.monitoring.rules import OK, RuleSpec, figure_of, next_state
from icefloe.monitoring.webhooks import Delivery, check_url, deliver
from icefloe.store import repo
from icefloe.store.db import Database
from icefloe.store.orm import AlertEvent, AlertRule, Deployment
from icefloe.timefmt import iso_utc, stored_utc

if TYPE_CHECKING:
    from icefloe.lakehouse import Lakehouse

MAX_ATTEMPTS = 12  # deliveries of one event, over evaluations, before it is given up
MIN_SECRET = 16
log = logging.getLogger(__name__)


def rule_json(rule: AlertRule) -> dict[str, Any]:
    """A rule as plain data (never its secret)."""
    return {"id": rule.id, "deployment": rule.deployment_id, "metric": rule.metric,
            "feature": rule.feature, "comparison": rule.comparison, "threshold": rule.threshold,
            "window": rule.window, "min_samples": rule.min_samples, "cooldown_s": rule.cooldown_s,
            "channel": rule.channel, "target": rule.target, "state": rule.state,
            "state_since": iso_utc(rule.state_since), "last_value": rule.last_value,
            "last_samples": rule.last_samples,
            "last_evaluated_at": iso_utc(rule.last_evaluated_at),
            "created_by": rule.created_by, "created_at": iso_utc(rule.created_at)}


def event_json(event: AlertEvent) -> dict[str, Any]:
    """A state change as plain data."""
    return {"id": event.id, "rule": event.rule_id, "at": iso_utc(event.at),
            "from": event.from_state, "to": event.to_state, "value": event.value,
            "samples": event.samples, "delivered": event.delivered,
            "attempts": event.attempts, "error": event.error}


def create_rule(db: Database, settings: Settings, deployment_id: str, spec: RuleSpec,
                secret: str, actor: str = "") -> AlertRule:
    """Make a rule (OK until evaluated).

    Raises:
        NotFoundError: No such deployment.
        InvalidInputError: A bad field, a webhook target that is not public and not on the
            allowlist (no request is made to it), or a secret shorter than 16 characters.
    """
    with db.session() as s:
        repo.get_deployment(s, deployment_id)
    spec.check()
    if spec.channel == "webhook":
        if len(secret) < MIN_SECRET or len(secret) > 1024:
            raise InvalidInputError(f"secret must be {MIN_SECRET} to 1,024 characters (it "
                                    "signs the webhook's body)")
        check_url(spec.target, settings.webhook_allowlist)
    elif not settings.smtp_host:
        raise InvalidInputError("e-mail rules need a mail server: set smtp_host (and "
                                "smtp_port, smtp_starttls, smtp_user, smtp_password)")
    with db.session() as s:
        repo.get_deployment(s, deployment_id)
        rule = AlertRule(id=repo.new_id(), deployment_id=deployment_id, metric=spec.metric,
                         feature=spec.feature, comparison=spec.comparison,
                         threshold=float(spec.threshold), window=spec.window,
                         min_samples=spec.min_samples, cooldown_s=spec.cooldown_s,
                         channel=spec.channel, target=spec.target,
                         secret_sealed=vault.seal(settings, {"secret": secret})
                         if secret else "", state=OK,
                         state_since=repo.now(), last_value=None, last_samples=0,
                         last_evaluated_at=None, created_by=actor, created_at=repo.now())
        s.add(rule)
        repo.audit(s, actor or "system", "rule.create", f"rule/{rule.id}", "ok",
                   f"deployment/{deployment_id} {spec.metric} {spec.comparison} "
                   f"{spec.threshold}")
        s.flush()
        s.refresh(rule)
        s.expunge(rule)
    return rule


def list_rules(db: Database, deployment_id: str | None = None) -> list[AlertRule]:
    """Rules, of one deployment or all, oldest first."""
    with db.session() as s:
        query = select(AlertRule).order_by(AlertRule.created_at, AlertRule.id)
        if deployment_id is not None:
            repo.get_deployment(s, deployment_id)
            query = query.where(AlertRule.deployment_id == deployment_id)
        rules = list(s.scalars(query))
        s.expunge_all()
        return rules


def get_rule(db: Database, rule_id: str) -> AlertRule:
    """One rule.

    Raises:
        NotFoundError: No such rule.
    """
    with db.session() as s:
        rule = s.get(AlertRule, rule_id)
        if rule is None:
            raise NotFoundError(f"alert rule {rule_id!r} does not exist")
        s.expunge(rule)
        return rule


def delete_rule(db: Database, rule_id: str, actor: str = "") -> None:
    """Delete a rule and its history."""
    with db.session() as s:
        rule = s.get(AlertRule, rule_id)
        if rule is None:
            raise NotFoundError(f"alert rule {rule_id!r} does not exist")
        s.execute(delete(AlertEvent).where(AlertEvent.rule_id == rule_id))
        s.delete(rule)
        repo.audit(s, actor or "system", "rule.delete", f"rule/{rule_id}", "ok")


def rule_events(db: Database, rule_id: str) -> list[AlertEvent]:
    """A rule's state changes, oldest first."""
    get_rule(db, rule_id)
    with db.session() as s:
        events = list(s.scalars(select(AlertEvent).where(AlertEvent.rule_id == rule_id)
                                .order_by(AlertEvent.id)))
        s.expunge_all()
        return events


def evaluate(db: Database, lakehouse: Lakehouse, settings: Settings,
             deployment_id: str | None = None, *, now_ms: int | None = None
             ) -> list[dict[str, Any]]:
    """Evaluate the rules (of one deployment, or of every DEPLOYED one), record and send
    their changes; returns the changes made by this call."""
    from icefloe.monitoring.monitor import monitor_deployment

    with db.session() as s:
        query = select(AlertRule).join(Deployment, Deployment.id == AlertRule.deployment_id)
        if deployment_id is not None:
            repo.get_deployment(s, deployment_id)
            query = query.where(AlertRule.deployment_id == deployment_id)
        else:
            query = query.where(Deployment.status == "DEPLOYED")
        rules = list(s.scalars(query.order_by(AlertRule.created_at, AlertRule.id)))
        s.expunge_all()
    measured: dict[tuple[str, str, int], dict[str, Any]] = {}
    changes: list[dict[str, Any]] = []
    for rule in rules:
        key = (rule.deployment_id, rule.window, rule.min_samples)
        try:
            if key not in measured:
                measured[key] = monitor_deployment(
                    db, lakehouse, rule.deployment_id, rule.window,
                    min_samples=rule.min_samples, record=False, now_ms=now_ms)
                points.record(db, measured[key])  # what the UI's charts show over time
        except Exception:  # one deployment that cannot be measured must not stop the rest
            if deployment_id is not None:
                raise
            log.exception("measuring deployment %s for rule %s failed", rule.deployment_id,
                          rule.id)
            measured[key] = {"figures": []}
            continue
        value, samples = figure_of(measured[key]["figures"], rule.metric, rule.feature)
        change = _move(db, rule, value, samples)
        if change is not None:
            changes.append(change)
            emit(lambda: _happening(rule, change, measured[key]))  # noqa: B023 - called now
    if deployment_id is None:
        _sweep_unruled(db, lakehouse, {dep for dep, _, _ in measured}, now_ms)
    _send_pending(db, settings)
    return changes


def _sweep_unruled(db: Database, lakehouse: Lakehouse, measured: set[str],
                   now_ms: int | None) -> None:
    """Measure the last hour of every serving deployment no rule measured, so each has
    points for its charts over time."""
    from icefloe.monitoring.monitor import monitor_deployment

    with db.session() as s:
        serving = list(s.scalars(select(Deployment.id).where(Deployment.status == "DEPLOYED")))
    for dep_id in serving:
        if dep_id in measured:
            continue
        try:
            points.record(db, monitor_deployment(db, lakehouse, dep_id, "1h", record=False,
                                                 now_ms=now_ms))
        except Exception:  # one deployment that cannot be measured must not stop the rest
            log.exception("measuring deployment %s failed", dep_id)


def _happening(rule: AlertRule, change: dict[str, Any], window: dict[str, Any]) -> Happening:
    """An alert happening: a rule's change of state, on the window it was measured on."""
    return Happening("alert", actor=Actor(user="system"), subject={
        "rule_id": rule.id, "event_id": change["id"], "deployment_id": rule.deployment_id,
        "metric": rule.metric, "feature": rule.feature, "from": change["from"],
        "to": change["to"], "value": change["value"], "samples": change["samples"],
        "window": rule.window, "start_ms": window.get("start_ms"),
        "end_ms": window.get("end_ms")})


def _spec(rule: AlertRule) -> RuleSpec:
    return RuleSpec(metric=rule.metric, comparison=rule.comparison, threshold=rule.threshold,
                    feature=rule.feature, window=rule.window, min_samples=rule.min_samples,
                    cooldown_s=rule.cooldown_s, channel=rule.channel, target=rule.target)



def _move(db: Database, rule: AlertRule, value: float | None, samples: int
          ) -> dict[str, Any] | None:
    now = repo.now()
    target = next_state(rule.state, stored_utc(rule.state_since), stored_utc(now), _spec(rule),
                        value, samples)
    with db.session() as s:
        values: dict[str, Any] = {"last_value": value, "last_samples": samples,
                                  "last_evaluated_at": now}
        if target is not None:
            values.update(state=target, state_since=now)
        moved = s.execute(update(AlertRule).where(AlertRule.id == rule.id,
                                                  AlertRule.state == rule.state)
                          .values(**values))
        if target is None or getattr(moved, "rowcount", 0) != 1:
            return None  # no change, or another evaluator recorded this one first
        event = AlertEvent(rule_id=rule.id, at=now, from_state=rule.state, to_state=target,
                           value=value, samples=samples, delivered=False, attempts=0, error="")
        s.add(event)
        repo.audit(s, "system", "rule.state", f"rule/{rule.id}", "ok",
                   f"{rule.state} -> {target} ({rule.metric} {rule.feature} = {value})")
        s.flush()
        return event_json(event)


_sending = threading.Lock()


def _send_pending(db: Database, settings: Settings) -> None:
    """Send every event not delivered yet (this call's and earlier failures)."""
    with _sending:  # one sender per process: an event is never sent twice at once
        with db.session() as s:
            pending = list(s.execute(
                select(AlertEvent, AlertRule).join(AlertRule, AlertRule.id == AlertEvent.rule_id)
                .where(AlertEvent.delivered.is_(False), AlertEvent.attempts < MAX_ATTEMPTS)
                .order_by(AlertEvent.id)))
            s.expunge_all()
        for event, rule in pending:
            payload = {"event": event.id, "rule": rule.id, "deployment": rule.deployment_id,
                       "metric": rule.metric, "feature": rule.feature,
                       "comparison": rule.comparison, "threshold": rule.threshold,
                       "window": rule.window, "state": event.to_state,
                       "previous": event.from_state, "value": event.value,
                       "samples": event.samples, "at": iso_utc(event.at)}
            try:
                if rule.channel == "email":
                    sent = mail.send(settings, rule.target, payload)
                else:
                    secret = vault.unseal(settings, rule.secret_sealed).get("secret", "")
                    sent = deliver(rule.target, payload, secret, settings.webhook_allowlist)
            except Exception as exc:  # kept on the event; the other events still go out
                sent = Delivery(False, 1, f"{type(exc).__name__}: {exc}"[:500])
            with db.session() as s:
                s.execute(update(AlertEvent).where(AlertEvent.id == event.id).values(
                    delivered=sent.delivered, attempts=AlertEvent.attempts + max(1, sent.attempts),
                    error=sent.error))
            if not sent.delivered:
                log.warning("alert %s of rule %s not delivered: %s", event.id, rule.id,
                            sent.error)


class Evaluator:
    """Evaluates every rule each ``interval`` seconds in a daemon thread (the control
    plane's schedule); a failed round is logged and the next one runs."""

    def __init__(self, db: Database, settings: Settings, interval: float) -> None:
        self.db, self.settings, self.interval = db, settings, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="icefloe-alerts", daemon=True)
        self._lakehouse: Lakehouse | None = None

    def start(self) -> None:
        """Start the schedule (nothing happens with an interval of 0)."""
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        """Stop after the round under way."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                access.prune_due(self.db, self.settings)  # the retention policy, hourly
                with self.db.session() as s:
                    if s.scalar(select(AlertRule.id).limit(1)) is None:
                        continue  # no rule anywhere: nothing to measure
                if self._lakehouse is None:
                    from icefloe.lakehouse import Lakehouse

                    self._lakehouse = Lakehouse(self.settings)
                evaluate(self.db, self._lakehouse, self.settings)
            except Exception:  # the schedule outlives a bad round; the log says why
                log.exception("evaluating the alert rules failed")
