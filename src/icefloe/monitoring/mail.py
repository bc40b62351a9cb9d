"""Alert e-mails over SMTP: one plain-text message per state change of a rule.

The server comes from the settings (``smtp_host``, ``smtp_port``, ``smtp_starttls``,
``smtp_user``, ``smtp_password``, ``smtp_from``). STARTTLS verifies the server's certificate;
credentials are sent only after it (or to a server the operator chose without it). Sending
is retried with backoff on connection errors and temporary (4xx) refusals; it never raises.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from icefloe.config import Settings
from icefloe.monitoring.webhooks import Delivery, retried

TIMEOUT_S = 10.0
LOOPBACK = ("localhost", "127.0.0.1", "::1")  # the password never leaves the machine


def message(settings: Settings, to: str, payload: dict[str, Any]) -> EmailMessage:
    """The e-mail of a state change."""
    feature = f" of {payload['feature']}" if payload.get("feature") else ""
    value = payload.get("value")
    shown = "no value" if value is None else f"{value:.4g}"
    mail = EmailMessage()
    mail["From"] = settings.smtp_from
    mail["To"] = to
    mail["Subject"] = (f"[icefloe] {payload['state']}: {payload['metric']}{feature} = {shown} "
                       f"({payload['comparison']} {payload['threshold']:g}) on deployment "
                       f"{payload['deployment']}")
    mail.set_content(
        f"Rule {payload['rule']} on deployment {payload['deployment']} is now "
        f"{payload['state']} (was {payload['previous']}).\n\n"
        f"{payload['metric']}{feature} over the window {payload['window']}: {shown} on "
        f"{payload['samples']} samples; the rule fires when it is {payload['comparison']} "
        f"{payload['threshold']:g}.\n\n" + json.dumps(payload, indent=2, sort_keys=True) + "\n")
    return mail


def send(settings: Settings, to: str, payload: dict[str, Any]) -> Delivery:
    """Send the e-mail of a state change (see the module)."""
    if not settings.smtp_host:
        return Delivery(False, 0, "no mail server: set smtp_host")
    mail = message(settings, to, payload)

    def send_once() -> tuple[str, str]:
        try:
            with smtplib.SMTP(settings.smtp_host, settings.smtp_port,
                              timeout=TIMEOUT_S) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if settings.smtp_user:
                    if not settings.smtp_starttls and settings.smtp_host not in LOOPBACK:
                        return "refused", ("refusing to send the SMTP password without "
                                           "STARTTLS: set smtp_starttls")
                    smtp.login(settings.smtp_user, settings.smtp_password)
                smtp.send_message(mail)
            return "sent", ""
        except smtplib.SMTPResponseException as exc:
            temporary = 400 <= exc.smtp_code < 500
            return ("retry" if temporary else "refused"), \
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500]
        except (smtplib.SMTPException, OSError) as exc:
            return "retry", f"{type(exc).__name__}: {exc}"[:500]

    return retried(send_once)
