"""The web front's TLS pieces without containers: the run CA and its certificates, judging a served
certificate (chain, host name, validity, the threshold), reading openssl's dates, keeping private
keys secret, and the client side (a handshake, keep-alive clients) against a TLS server on
127.0.0.1 in the test process (drillkit/stack/services/web.py, stack/secrets.py, catalog/tls.py)."""

from __future__ import annotations

import base64
import contextlib
import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from drillkit.catalog.tls import ReloadWatch, _watcher
from drillkit.stack.secrets import Secrets
from drillkit.stack.services.web import (
    TLS_HOSTNAME,
    TLS_MIN_REMAINING_S,
    TLS_VALIDITY_S,
    Issued,
    RunCA,
    cert_facts,
    certificate_problems,
    load_certificate,
    parse_openssl_dates,
    pem_secret_lines,
    served_certificate,
    verified_handshake,
)
from drillkit.wait import wait_for

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
DAY = 86400.0


@pytest.fixture(scope="module")
def ca() -> RunCA:
    return RunCA("drillkit run CA test", now=NOW)


def test_a_new_certificate_is_valid_for_the_web_front(ca: RunCA) -> None:
    issued = ca.issue(now=NOW)
    assert certificate_problems(issued.cert, ca.cert, TLS_HOSTNAME, NOW) == []
    facts = cert_facts(issued.cert)
    assert facts.not_after.timestamp() == NOW + TLS_VALIDITY_S
    assert facts.dns_names == (TLS_HOSTNAME,)
    assert facts.issuer == ca.cert.subject.rfc4514_string()
    # the chain nginx serves: the leaf, then the CA
    chain = x509.load_pem_x509_certificates(issued.chain_pem)
    assert [c.serial_number for c in chain] == [issued.cert.serial_number, ca.cert.serial_number]
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_an_expired_certificate_is_named_expired(ca: RunCA) -> None:
    old = ca.issue(not_after=NOW - 3600, now=NOW)
    problems = certificate_problems(old.cert, ca.cert, TLS_HOSTNAME, NOW)
    assert len(problems) == 1
    assert problems[0].startswith("expired at 2027-01-15 07:00:00 UTC (1.0 h ago)")
    assert "expired 1.0 h ago" in cert_facts(old.cert).describe(NOW)


def test_a_certificate_below_the_threshold_fails_above_it_passes(ca: RunCA) -> None:
    soon = ca.issue(not_after=NOW + 2 * DAY, now=NOW)
    problems = certificate_problems(soon.cert, ca.cert, TLS_HOSTNAME, NOW)
    assert problems == ["expires at 2027-01-17 08:00:00 UTC: 2.0 d left, below the 7.0 d threshold"]
    later = ca.issue(not_after=NOW + TLS_MIN_REMAINING_S + 60, now=NOW)
    assert certificate_problems(later.cert, ca.cert, TLS_HOSTNAME, NOW) == []
    # the threshold is the caller's
    assert certificate_problems(soon.cert, ca.cert, TLS_HOSTNAME, NOW, min_remaining_s=DAY) == []


def test_another_ca_and_another_host_and_not_yet_valid_are_refused(ca: RunCA) -> None:
    other = RunCA("someone else", now=NOW)
    foreign = other.issue(now=NOW)
    problems = certificate_problems(foreign.cert, ca.cert, TLS_HOSTNAME, NOW)
    assert len(problems) == 1 and problems[0].startswith("not issued by the run CA")
    wrong_host = ca.issue("shop.example", now=NOW)
    assert certificate_problems(wrong_host.cert, ca.cert, TLS_HOSTNAME, NOW) == [
        "not for web (names: shop.example)"
    ]
    future = ca.issue(not_before=NOW + DAY, not_after=NOW + 60 * DAY, now=NOW)
    assert certificate_problems(future.cert, ca.cert, TLS_HOSTNAME, NOW) == [
        "not valid before 2027-01-16 08:00:00 UTC"
    ]


def test_issue_refuses_an_empty_validity_period(ca: RunCA) -> None:
    with pytest.raises(ValueError, match="is not after notBefore"):
        ca.issue(not_before=NOW, not_after=NOW - 1, now=NOW)


def test_load_certificate_reads_pem_and_der(ca: RunCA) -> None:
    issued = ca.issue(now=NOW)
    der = issued.cert.public_bytes(serialization.Encoding.DER)
    assert load_certificate(issued.chain_pem).serial_number == issued.cert.serial_number
    assert load_certificate(der).serial_number == issued.cert.serial_number
    with pytest.raises(ValueError):
        load_certificate(b"not a certificate")


def test_openssl_dates_from_enddate_and_from_text() -> None:
    out = (
        "subject=CN = web\nissuer=CN = drillkit run CA x\nserial=1A2B\n"
        "notBefore=Oct 17 07:00:00 2026 GMT\nnotAfter=Jan  5 07:00:00 2027 GMT\n"
    )
    dates = parse_openssl_dates(out)
    assert dates["notBefore"].isoformat() == "2026-10-17T07:00:00+00:00"
    assert dates["notAfter"].isoformat() == "2027-01-05T07:00:00+00:00"
    text = "            Not Before: Oct 17 07:00:00 2026 GMT\n            Not After : Jan  5 07:00:00 2027 GMT\n"
    assert parse_openssl_dates(text) == dates
    assert parse_openssl_dates("Certificate will expire\n") == {}
    with pytest.raises(ValueError, match="not an openssl date"):
        parse_openssl_dates("notAfter=2027-01-05T07:00:00Z")


def test_a_private_key_is_registered_line_by_line(ca: RunCA, tmp_path: Path) -> None:
    pem = ca.issue(now=NOW).key_pem
    lines = pem_secret_lines(pem)
    assert lines and all(" " not in line and not line.startswith("-") for line in lines)
    body = pem.decode().split("-----")[2]
    assert base64.b64decode("".join(lines)) == base64.b64decode("".join(body.split()))
    secrets = Secrets(tmp_path / "run")
    before = {p.name for p in (tmp_path / "run").rglob("*")}
    for i, line in enumerate(lines):
        secrets.register(f"web_tls_key.{i}", line)
    assert set(lines) <= set(secrets.values())
    assert {p.name for p in (tmp_path / "run").rglob("*")} == before  # no file written


class _Health(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    drop = threading.Event()
    """Once set, a request on an open connection is not answered: the connection is closed."""

    def do_GET(self) -> None:
        if self.drop.is_set():
            self.close_connection = True
            return
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def _tls_server(issued: Issued, tmp_path: Path) -> Iterator[int]:
    """A TLS server on 127.0.0.1 (an ephemeral port) serving `issued`'s chain: a real handshake
    without containers."""
    _Health.drop.clear()
    (tmp_path / "chain.pem").write_bytes(issued.chain_pem)
    (tmp_path / "key.pem").write_bytes(issued.key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "chain.pem", tmp_path / "key.pem")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_served_certificate_as_a_client_reads_and_judges_it(tmp_path: Path) -> None:
    live = RunCA("drillkit run CA live")
    (tmp_path / "ca.crt").write_bytes(live.cert_pem)
    good = live.issue()
    with _tls_server(good, tmp_path) as port:
        cert, status = served_certificate(port, TLS_HOSTNAME)
        assert (cert.serial_number, status) == (good.cert.serial_number, 200)
        verified_handshake(port, tmp_path / "ca.crt", TLS_HOSTNAME)
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            verified_handshake(port, tmp_path / "ca.crt", "shop.example")
    expired = live.issue(not_after=time.time() - 3600)
    with _tls_server(expired, tmp_path) as port:
        cert, status = served_certificate(port, TLS_HOSTNAME)
        assert cert.serial_number == expired.cert.serial_number
        with pytest.raises(ssl.SSLCertVerificationError) as err:
            verified_handshake(port, tmp_path / "ca.crt", TLS_HOSTNAME)
        assert err.value.verify_message == "certificate has expired"


def test_keep_alive_clients_count_answers_and_failures(tmp_path: Path) -> None:
    live = RunCA("drillkit run CA live")
    watch = ReloadWatch()
    lock = threading.Lock()
    stop = threading.Event()
    with _tls_server(live.issue(), tmp_path) as port:
        t = threading.Thread(target=_watcher, args=(port, stop, watch, lock), daemon=True)
        t.start()
        wait_for(lambda: watch.requests >= 5, what="5 answers", timeout_s=30, interval_s=0.01)
        assert watch.failures == [] and watch.reconnects == 0
        _Health.drop.set()
    # the server is gone and closes the kept-alive connection at the next request: the client
    # sends it again on a new connection, which is refused (a failure)
    wait_for(lambda: watch.failures, what="a failure", timeout_s=30, interval_s=0.01)
    stop.set()
    t.join(timeout=10)
    assert watch.requests >= 6 and watch.reconnects >= 1
    assert watch.failures[0].startswith(("ConnectionRefusedError", "new connection"))


class _InspectCtx:
    """What inspect-certificate records on: figures and evidence."""

    def __init__(self) -> None:
        self.stack = object()
        self.figures: dict[str, object] = {}
        self.evidence_items: list[str] = []

    def figure(self, key: str, value: object) -> None:
        self.figures[key] = value

    def evidence(self, name: str, text: str) -> None:
        self.evidence_items.append(name)


def _inspect_with(monkeypatch: pytest.MonkeyPatch, answers: list[str]) -> _InspectCtx:
    from types import SimpleNamespace

    from drillkit.catalog import tls

    asked: list[str] = []

    def exec_root(stack: object, cmd: str, what: str) -> tuple[int, str]:
        asked.append(cmd)
        return 0, answers[min(len(asked), len(answers)) - 1]

    monkeypatch.setattr(tls, "_exec_root", exec_root)
    monkeypatch.setattr(tls, "web_kind", lambda stack: SimpleNamespace(min_remaining_s=86400))
    monkeypatch.setattr(tls, "served_problems", lambda web: ([], "valid"))
    ctx = _InspectCtx()
    ctx.asked = asked  # type: ignore[attr-defined]
    ctx.detail = tls.inspect_certificate(ctx)  # type: ignore[attr-defined, arg-type]
    return ctx


FULL = "notBefore=Dec  1 00:00:00 2026 GMT\nnotAfter=Dec 31 00:00:00 2026 GMT\nCertificate will not expire\ncheckend=0\n"


def test_inspect_certificate_asks_again_when_the_answer_lost_openssls_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = _inspect_with(monkeypatch, ["checkend=1\n", FULL])
    assert len(ctx.asked) == 2 and ctx.figures["cert_inspect_incomplete_output"] == 1  # type: ignore[attr-defined]
    assert "notAfter 2026-12-31 00:00:00 UTC" in ctx.detail  # type: ignore[attr-defined]


def test_inspect_certificate_fails_when_openssl_never_names_a_date(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from drillkit.catalog.tls import INSPECT_TRIES
    from drillkit.errors import StepFailed

    with pytest.raises(StepFailed, match="no notAfter in openssl's output: checkend=1"):
        _inspect_with(monkeypatch, ["checkend=1\n"])
    assert INSPECT_TRIES == 3
