"""The webhook notifier: one Slack-compatible JSON POST (`{"text": ...}`) to a URL the operator
configured (`--drill-webhook`, ini `drill_webhook`, `drillkit finish --webhook`); off by default.

A webhook URL is itself a credential (Slack's carry a token in the path), so no message, log
line or exception names more of it than its scheme and host. The text is redacted against the
secrets the caller knows before it leaves.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from drillkit.errors import ValidationError
from drillkit.reporting import redact_text

DEFAULT_TIMEOUT_S = 10.0
LOOPBACK = ("127.0.0.1", "::1", "localhost")
"""Hosts reached directly, never through an HTTP proxy from the environment."""
MAX_TEXT = 3500
"""Slack truncates longer messages; we cut first and say so."""


def describe_url(url: str) -> str:
    """'https://hooks.example.com/…': the scheme and host only (the path may hold a token)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def check_url(url: str) -> str:
    """The URL if it is an absolute http(s) URL with a host; else ValidationError (naming no
    more of it than `describe_url`)."""
    try:
        parts = urllib.parse.urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ValidationError(["webhook: expected an http:// or https:// URL with a host"])
    return url


def post(
    url: str, text: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, redact: Sequence[str] = ()
) -> None:
    """POST {"text": text} as JSON; raises OSError (naming only scheme and host) when the
    receiver does not answer 2xx within `timeout_s`."""
    check_url(url)
    text = redact_text(text, redact)
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 30].rstrip() + "\n… (cut; see the report)"
    body = json.dumps({"text": text}).encode()
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "drillkit"},
    )
    where = describe_url(url)
    host = urllib.parse.urlsplit(url).hostname or ""
    handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        raise OSError(f"webhook {where} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise OSError(f"webhook {where} unreachable: {type(reason).__name__}") from None
    if not 200 <= status < 300:
        raise OSError(f"webhook {where} answered HTTP {status}")


__all__ = ["DEFAULT_TIMEOUT_S", "check_url", "describe_url", "post"]
