"""Alert rules move OK -> FIRING -> RESOLVED once per change; webhooks go only where allowed."""

from datetime import UTC, datetime, timedelta

import pytest

from icefloe.errors import InvalidInputError
from icefloe.monitoring.rules import FIRING, OK, RESOLVED, RuleSpec, next_state
from icefloe.monitoring.webhooks import check_url, signature

T0 = datetime(2026, 11, 27, tzinfo=UTC)
SPEC = RuleSpec(metric="psi", feature="dti", comparison=">", threshold=0.25, min_samples=100,
                cooldown_s=600, target="https://hooks.example.org/x")


def test_states_change_once_per_crossing_and_wait_for_samples_and_cooldown() -> None:
    later = T0 + timedelta(hours=1)
    assert next_state(OK, T0, later, SPEC, 0.1, 500) is None
    assert next_state(OK, T0, later, SPEC, 0.4, 50) is None  # too few samples: no evidence
    assert next_state(OK, T0, later, SPEC, None, 500) is None
    assert next_state(OK, T0, later, SPEC, 0.4, 500) == FIRING
    assert next_state(FIRING, T0, later, SPEC, 0.4, 500) is None  # no second notification
    assert next_state(FIRING, T0, T0 + timedelta(seconds=10), SPEC, 0.1, 500) is None  # cooldown
    assert next_state(FIRING, T0, later, SPEC, 0.1, 500) == RESOLVED
    assert next_state(RESOLVED, T0, later, SPEC, 0.1, 500) is None
    assert next_state(RESOLVED, T0, later, SPEC, 0.3, 500) == FIRING


@pytest.mark.parametrize(("fields", "message"), [
    ({"metric": "speed"}, "metric 'speed' is not one of"),
    ({"feature": ""}, "needs a feature"),
    ({"metric": "accuracy"}, "give no feature"),
    ({"comparison": "=="}, "comparison '=='"),
    ({"threshold": float("nan")}, "finite"),
    ({"window": "soon"}, "window 'soon'"),
    ({"channel": "pager"}, "channel 'pager'"),
])
def test_bad_rules_are_refused_by_field(fields: dict, message: str) -> None:
    spec = RuleSpec(**{**SPEC.__dict__, **fields})
    with pytest.raises(InvalidInputError, match=message):
        spec.check()


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data", "http://10.1.2.3/",
                                 "http://192.168.0.9:8080/x", "http://localhost:9/hook",
                                 "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/",
                                 "http://100.100.100.200/", "http://[2002:a9fe:a9fe::]/",
                                 "http://[fec0::1]/", "http://[fe80::1]/",
                                 "file:///etc/passwd", "http://user:pw@example.org/"])
def test_webhooks_to_internal_or_odd_targets_are_refused(url: str) -> None:
    with pytest.raises(InvalidInputError, match="webhook"):
        check_url(url)


def test_the_allowlist_opens_named_hosts_and_networks_only() -> None:
    assert check_url("http://localhost:9/hook", "localhost") == "http://localhost:9/hook"
    assert check_url("http://10.1.2.3/", "10.1.0.0/16") == "http://10.1.2.3/"
    with pytest.raises(InvalidInputError, match="10.2.0.1"):
        check_url("http://10.2.0.1/", "10.1.0.0/16")


def test_the_signature_is_hmac_sha256_of_the_exact_body() -> None:
    import hashlib
    import hmac

    body = b'{"state":"FIRING"}'
    assert signature("s3cret", body) == "sha256=" + hmac.new(b"s3cret", body,
                                                             hashlib.sha256).hexdigest()


def test_a_traffic_rule_fires_on_no_traffic_at_all() -> None:
    quiet = RuleSpec(metric="requests", comparison="<", threshold=1, min_samples=100,
                     target="https://hooks.example.org/x")
    assert next_state(OK, T0, T0 + timedelta(hours=1), quiet, 0.0, 0) == FIRING


def test_a_feature_name_with_a_line_break_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="control character"):
        RuleSpec(**{**SPEC.__dict__, "feature": "dti\r\nBcc: x@example.org"}).check()
