"""The availability probe judges a real HTTP answer by the stack file's health rule: a Spring-style
`{"status": "UP"}` app and a plain-text `OK` app pass when their stack file says so."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from drillkit.core.probes import ProbeConfig, Probes
from drillkit.stack.spec import REFERENCE_HEALTH, parse_stack


@pytest.fixture
def server():
    """A local HTTP server answering GET with the (status, content type, body) in `answer`."""
    answer = {"value": (200, "text/plain", b"OK")}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            status, ctype, body = answer["value"]
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", answer
    httpd.shutdown()
    httpd.server_close()


def probe_once(url: str, health) -> tuple[bool, str | None]:
    probes = Probes(lambda: url, health, ProbeConfig(timeout_s=2.0), "t")
    probes._availability()
    sample = probes.samples[-1]
    return sample.ok, sample.error


def health(raw):
    return parse_stack({"name": "t", "database": {}, "app": {"health": raw}}, "s.yaml").app.health


def test_spring_style_app(server):
    url, answer = server
    answer["value"] = (200, "application/json", b'{"status":"UP","groups":["liveness"]}')
    assert probe_once(
        url, health({"path": "/actuator/health", "json": {"path": "status", "equals": "UP"}})
    ) == (True, None)
    ok, why = probe_once(
        url, REFERENCE_HEALTH
    )  # the reference app's rule fails it, with the reason
    assert not ok and why == "health 200: status is 'UP', expected 'ok'"


def test_plain_text_app(server):
    url, answer = server
    answer["value"] = (200, "text/plain", b"OK\n")
    assert probe_once(url, health({"path": "/ping", "body_contains": "OK"})) == (True, None)
    answer["value"] = (503, "text/plain", b"starting")
    ok, why = probe_once(url, health({"path": "/ping", "body_contains": "OK"}))
    assert not ok and why.startswith("health 503 (expected 200)")


def test_reference_app_in_maintenance(server):
    url, answer = server
    answer["value"] = (200, "application/json", b'{"status": "ok", "maintenance": true}')
    assert probe_once(url, REFERENCE_HEALTH) == (
        False,
        "health: maintenance mode on (writes are refused)",
    )
    answer["value"] = (200, "application/json", b'{"status": "ok", "maintenance": false}')
    assert probe_once(url, REFERENCE_HEALTH) == (True, None)
