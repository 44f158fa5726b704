#!/usr/bin/env python3
"""A stub status page: a tiny Statuspage-like API for incident communications.

Python 3.11 standard library only; everything in memory (a restart empties it).

- ``POST /api/v1/incidents`` (``Authorization: Bearer <key>``, the key in API_KEY_FILE; body
  ``{"name", "status", "impact", "body"}``) opens an incident with its first update.
- ``POST /api/v1/incidents/<id>/updates`` (same key; ``{"status", "body"}``) adds an update; the
  status ``resolved`` closes the incident.
- ``GET /api/v1/incidents``: every incident with its updates, each stamped ``received_at`` (Unix
  time, the moment the page accepted it: what "posted within 5 minutes" is measured by).
- ``GET /api/v2/status.json``: the page's indicator (``none`` with no open incident, else the
  worst open impact) and description.

Statuses: investigating, identified, monitoring, resolved. Impacts: none, minor, major, critical.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

STATUSES = ("investigating", "identified", "monitoring", "resolved")
IMPACTS = ("none", "minor", "major", "critical")
MAX_BODY = 1 << 16
MAX_TEXT = 8000
_UPDATES_PATH = re.compile(r"/api/v1/incidents/([0-9]{1,9})/updates")


def log(event: str, **fields: Any) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    parts = [stamp, event, *(f"{k}={json.dumps(v)}" for k, v in fields.items())]
    sys.stdout.write(" ".join(parts) + "\n")
    sys.stdout.flush()


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise ValueError(f"{name} must be a non-empty string of at most {MAX_TEXT} characters")
    return value


def _status(body: dict[str, Any]) -> str:
    status = body.get("status")
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    return str(status)


class Page:
    """The incidents, in memory, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.incidents: list[dict[str, Any]] = []

    def open(self, body: dict[str, Any]) -> dict[str, Any]:
        name, text, status = _text(body, "name"), _text(body, "body"), _status(body)
        impact = body.get("impact", "major")
        if impact not in IMPACTS:
            raise ValueError(f"impact must be one of {', '.join(IMPACTS)}")
        with self.lock:
            now = time.time()
            incident = {
                "id": len(self.incidents) + 1,
                "name": name,
                "impact": impact,
                "status": status,
                "created_at": now,
                "resolved_at": now if status == "resolved" else None,
                "updates": [{"status": status, "body": text, "received_at": now}],
            }
            self.incidents.append(incident)
            return json.loads(json.dumps(incident))

    def update(self, incident_id: int, body: dict[str, Any]) -> dict[str, Any] | None:
        text, status = _text(body, "body"), _status(body)
        with self.lock:
            if not 1 <= incident_id <= len(self.incidents):
                return None
            incident = self.incidents[incident_id - 1]
            now = time.time()
            incident["updates"].append({"status": status, "body": text, "received_at": now})
            incident["status"] = status
            incident["resolved_at"] = now if status == "resolved" else None
            return json.loads(json.dumps(incident))

    def listing(self) -> list[dict[str, Any]]:
        with self.lock:
            return json.loads(json.dumps(self.incidents))

    def indicator(self) -> dict[str, str]:
        with self.lock:
            open_ = [i for i in self.incidents if i["status"] != "resolved"]
        if not open_:
            return {"indicator": "none", "description": "All Systems Operational"}
        worst = max(open_, key=lambda i: IMPACTS.index(i["impact"]))
        return {"indicator": worst["impact"], "description": worst["name"]}


class Handler(BaseHTTPRequestHandler):
    server_version = "drillkit-statuspage/1"
    page: Page
    api_key: str

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/api/v2/status.json":
            self._send(200, {"status": self.page.indicator()})
        elif path == "/api/v1/incidents":
            self._send(200, {"incidents": self.page.listing()})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        given = self.headers.get("Authorization", "")
        if not self.api_key or not hmac.compare_digest(
            given.encode(), f"Bearer {self.api_key}".encode()
        ):
            self._send(401, {"error": "invalid or missing API key"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                raise ValueError(f"a JSON body of 1..{MAX_BODY} bytes is required")
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            if path == "/api/v1/incidents":
                incident: dict[str, Any] | None = self.page.open(body)
            elif (m := _UPDATES_PATH.fullmatch(path)) is not None:
                incident = self.page.update(int(m.group(1)), body)
                if incident is None:
                    self._send(404, {"error": "no such incident"})
                    return
            else:
                self._send(404, {"error": "not found"})
                return
        except ValueError as exc:
            self._send(400, {"error": str(exc)})
            return
        assert incident is not None
        log("update", incident=incident["id"], status=incident["status"])
        self._send(201, incident)

    def log_message(self, fmt: str, *args: Any) -> None:
        pass


def main() -> int:
    key_file = os.environ.get("API_KEY_FILE", "/run/drillkit/secrets/statuspage_api_key")
    with open(key_file, encoding="utf-8") as f:
        Handler.api_key = f.read().strip()
    Handler.page = Page()
    port = int(os.environ.get("PORT", "8070"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    log("listening", port=port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
