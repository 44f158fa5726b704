"""The payment drill's pure parts and the stub provider, without containers: reconciliation of the
app's payments with the providers' ledgers, and the stub provider (images/payments/server.py, run
in-process on 127.0.0.1) driven by the reference app's own provider client, including the timeout
path of a provider that holds a charge request unanswered."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import pytest
import requests
from image_modules import load_image_module

from drillkit.core.scenario import parse_scenario_text
from drillkit.stack.services.payments import (
    AppPayment,
    PaymentAck,
    ProviderCharge,
    charges_from_listing,
    control_headers,
    pay_answers,
    payment_table,
    reconcile,
)
from drillkit.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
CONTROL_TOKEN = "control-token-for-the-unit-tests-0001"


def _load(name: str, path: Path) -> ModuleType:
    return load_image_module(name, path)


stub = _load("drillkit_payments_stub", ROOT / "images" / "payments" / "server.py")
app = _load("drillkit_reference_app_for_payments", ROOT / "images" / "app" / "app.py")


# ----- reconciliation ------------------------------------------------------------------------


def pay(order_id: int, status: str = "captured", provider: str = "provider") -> AppPayment:
    charge = f"ch_{provider}_{order_id}" if status == "captured" else None
    return AppPayment(order_id, f"pay:o{order_id}", 100, status, provider, charge)


def charge(order_id: int, provider: str = "provider", amount: int = 100) -> ProviderCharge:
    return ProviderCharge(provider, f"ch_{provider}_{order_id}", f"pay:o{order_id}", amount)


def ack(order_id: int, status: str = "captured", provider: str = "provider") -> PaymentAck:
    cid = f"ch_{provider}_{order_id}" if status == "captured" else None
    return PaymentAck(order_id, f"pay:o{order_id}", status, provider, cid, float(order_id))


def test_every_payment_captured_once_reconciles():
    payments = [pay(1), pay(2, provider="provider-backup")]
    charges = [charge(1), charge(2, "provider-backup")]
    acks = [ack(1), ack(2, "pending")]  # acknowledged pending, captured later at the backup
    rec = reconcile(payments, charges, acks)
    assert rec.ok and rec.captured_once == 2 and rec.problems() == []
    assert rec.describe().endswith("every one reconciled")


def test_an_order_charged_at_both_providers_is_a_duplicate():
    payments = [pay(1, provider="provider-backup"), pay(2)]
    charges = [charge(1), charge(1, "provider-backup"), charge(2)]
    rec = reconcile(payments, charges)
    assert not rec.ok
    assert [key for key, _ in rec.duplicates] == ["pay:o1"]
    assert rec.unrecorded == ()  # the extra charge is reported once, as the duplicate
    assert rec.captured_once == 1
    assert "1 orders charged more than once: pay:o1 (ch_provider_1 at provider + " in (
        rec.describe()
    )


def test_pending_payments_and_unrecorded_charges_are_named():
    # order 1: the provider captured it but its answer and webhook were lost (app still pending)
    rec = reconcile([pay(1, "pending"), pay(2)], [charge(1), charge(2)])
    assert [p.order_id for p in rec.pending] == [1]
    assert [c.id for c in rec.unrecorded] == ["ch_provider_1"]
    assert "1 payments left pending: order 1 (last tried at provider)" in rec.describe()


def test_a_charge_without_any_payment_record_is_unrecorded():
    rec = reconcile([], [charge(9)])
    assert [c.key for c in rec.unrecorded] == ["pay:o9"] and not rec.ok


def test_a_capture_no_provider_holds_is_missing_and_amounts_are_compared():
    rec = reconcile([pay(1), pay(2)], [charge(2, amount=999)])
    assert [p.order_id for p in rec.missing] == [1]
    assert [p.order_id for p in rec.amount_mismatch] == [2]
    assert rec.captured_once == 0


def test_acknowledged_payments_must_be_in_the_app():
    rec = reconcile([pay(1)], [charge(1)], [ack(1), ack(2, "pending"), ack(3)])
    assert [a.order_id for a in rec.lost] == [2, 3]
    # acknowledged captured by one charge, recorded with another: lost too
    other = AppPayment(1, "pay:o1", 100, "captured", "provider", "ch_other")
    rec = reconcile([other], [ProviderCharge("provider", "ch_other", "pay:o1", 100)], [ack(1)])
    assert [a.order_id for a in rec.lost] == [1]


def test_failed_charges_do_not_count():
    failed = ProviderCharge("provider", "ch_x", "pay:o1", 100, status="failed")
    assert reconcile([pay(1)], [charge(1), failed]).ok


def test_charges_from_listing_and_table():
    listing = {
        "data": [{"id": "ch_1", "idempotency_key": "k", "amount_cents": 5, "status": "succeeded"}]
    }
    assert charges_from_listing("provider", listing) == [ProviderCharge("provider", "ch_1", "k", 5)]
    with pytest.raises(ValueError, match="data"):
        charges_from_listing("provider", {"nope": []})
    table = payment_table([pay(2), pay(1, "pending")])
    assert table.splitlines()[1].startswith("1 ") and "pending" in table


def test_pay_answers_counts_statuses_of_pay_requests_only():
    log = "\n".join(
        [
            '2026-12-01T06:00:00.1Z request method="POST" path="/api/orders/7/pay" status=201 duration_ms=4.1',
            '2026-12-01T06:00:00.2Z request method="POST" path="/api/orders/8/pay" status=202 duration_ms=1003.0',
            '2026-12-01T06:00:00.3Z request method="POST" path="/api/orders/9/pay" status=202 duration_ms=2.0',
            '2026-12-01T06:00:00.4Z request method="POST" path="/api/orders" status=503 duration_ms=1.0',
            '2026-12-01T06:00:00.5Z request method="GET" path="/api/orders/9" status=200 duration_ms=1.0',
            '2026-12-01T06:00:00.6Z request method="POST" path="/api/orders/10/pay" status=503 duration_ms=9',
        ]
    )
    assert pay_answers(log) == {201: 1, 202: 2, 503: 1}


def test_the_payment_scenarios_need_the_payment_stack():
    text = (ROOT / "scenarios" / "payment-provider-failure.yaml").read_text()
    sc = parse_scenario_text(text)
    assert sc.stack == {"payments": True}
    assert "payments-reconciled" in [c.id for c in sc.checklist]
    with pytest.raises(Exception, match="unknown service 'provider'"):
        parse_scenario_text(text.replace("stack: {payments: true}", "stack: {}"))


# ----- the stub provider ---------------------------------------------------------------------


def test_behaviour_cycles_through_the_pattern():
    pattern = ["error", "capture-hang", "hang"]
    assert [stub.behaviour_for(pattern, n) for n in range(5)] == [
        "error",
        "capture-hang",
        "hang",
        "error",
        "capture-hang",
    ]
    assert stub.behaviour_for([], 7) == "ok"
    with pytest.raises(ValueError, match="unknown behaviours"):
        stub.validate_pattern(["ok", "explode"])


WEBHOOK_SECRET = b"unit-webhook-secret"


class Receiver(BaseHTTPRequestHandler):
    """Stands in for the app's webhook endpoint: verifies with the app's own function."""

    received: ClassVar[list[tuple[bool, dict]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = app.verify_webhook_signature(
            WEBHOOK_SECRET, body, self.headers.get("X-Provider-Signature")
        )
        Receiver.received.append((ok, json.loads(body)))
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve(server: ThreadingHTTPServer) -> threading.Thread:
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    return t


@pytest.fixture
def provider() -> Iterator[tuple[ModuleType, str]]:
    Receiver.received = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    _serve(receiver)
    hook = f"http://127.0.0.1:{receiver.server_address[1]}/api/payments/webhook"
    p = stub.Provider("provider", hook, WEBHOOK_SECRET, CONTROL_TOKEN.encode())
    server = stub.Server(("127.0.0.1", 0), p)
    _serve(server)
    try:
        yield p, server.server_address[1]
    finally:
        p.clear_fault()
        server.shutdown()
        receiver.shutdown()
        server.server_close()
        receiver.server_close()


def target(port: int):
    return app.ProviderTarget("127.0.0.1", port)


def test_a_healthy_provider_charges_once_per_key_and_sends_a_signed_webhook(provider):
    p, port = provider
    client = app.ProviderClient(timeout_s=2.0)
    first = client.charge(target(port), "pay:k1", 100, "order 1")
    again = client.charge(target(port), "pay:k1", 100, "order 1 retried")
    assert first == again and first.provider == "provider"
    assert client.lookup(target(port), "pay:k1") == first
    assert client.lookup(target(port), "pay:unknown") is None
    assert len(p.list()) == 1
    wait_for(lambda: Receiver.received, what="the webhook", timeout_s=5)
    ok, event = Receiver.received[0]
    assert ok and event["type"] == "charge.succeeded"
    assert app.validate_webhook_body(event) == first
    with pytest.raises(app.PaymentError) as exc:
        client.charge(target(port), "pay:k1", 999, "another amount, same key")
    assert exc.value.kind == "refused"


def test_a_failing_provider_errors_times_out_and_loses_webhooks(provider):
    p, port = provider
    base = f"http://127.0.0.1:{port}"
    r = requests.put(
        base + "/_drill/fault",
        json={"pattern": ["error", "capture-hang", "hang"], "drop_webhooks": True},
        headers=control_headers(CONTROL_TOKEN),
        timeout=5,
    )
    assert r.status_code == 200
    status = requests.get(base + "/api/v2/status.json", timeout=5).json()["status"]
    assert status["indicator"] == "major"
    client = app.ProviderClient(timeout_s=0.3)
    kinds = []
    for n in range(3):
        with pytest.raises(app.PaymentError) as exc:
            client.charge(target(port), f"pay:k{n}", 100, f"order {n}")
        kinds.append(exc.value.kind)
    assert kinds == ["error", "timeout", "timeout"]
    # the ledger (the dashboard) still answers: the captured-then-hung charge is there
    assert [c["idempotency_key"] for c in p.list()] == ["pay:k1"]
    assert client.lookup(target(port), "pay:k1").idempotency_key == "pay:k1"
    assert client.lookup(target(port), "pay:k2") is None
    assert p.list()[0]["webhook"] == "dropped" and Receiver.received == []
    assert p.fault()["counts"]["webhooks_dropped"] == 1
    requests.delete(base + "/_drill/fault", headers=control_headers(CONTROL_TOKEN), timeout=5)
    assert client.charge(target(port), "pay:k2", 100, "order 2").idempotency_key == "pay:k2"


def test_an_unreachable_provider_is_reported_as_such():
    probe = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    port = probe.server_address[1]
    probe.server_close()  # nothing listens there any more
    with pytest.raises(app.PaymentError) as exc:
        app.ProviderClient(timeout_s=1.0).charge(target(port), "pay:k", 1, "x")
    assert exc.value.kind in ("unreachable", "error")


# ----- the control answers only the harness; bodies are bounded (issue 16, class 6) ----------


def raw_request(port: int, head: str, body: bytes = b"") -> bytes:
    """One request on a raw socket (requests would refuse to send a bad Content-Length)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head.encode("utf-8") + b"\r\n\r\n" + body)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out and out.endswith(b"}"):
                break
    return out


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": CONTROL_TOKEN}, control_headers("")],
    ids=["none", "wrong", "no-scheme", "empty"],
)
def test_the_fault_control_refuses_a_caller_without_the_token(provider, headers):
    p, port = provider
    base = f"http://127.0.0.1:{port}/_drill/fault"
    for method in ("GET", "PUT", "DELETE"):
        r = requests.request(method, base, json={"pattern": ["error"]}, headers=headers, timeout=5)
        assert r.status_code == 401, method
    assert p.fault()["pattern"] == []
    ok = requests.put(
        base, json={"pattern": ["error"]}, headers=control_headers(CONTROL_TOKEN), timeout=5
    )
    assert ok.status_code == 200 and p.fault()["pattern"] == ["error"]


def test_a_stub_without_a_token_refuses_every_control_call():
    p = stub.Provider("provider", "http://127.0.0.1:9/hook", b"w")
    server = stub.Server(("127.0.0.1", 0), p)
    _serve(server)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/_drill/fault"
        r = requests.put(base, json={"pattern": ["error"]}, headers=control_headers(""), timeout=5)
        assert r.status_code == 401 and p.fault()["pattern"] == []
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "+5", "0x10", " 5 5", "\u0665"])
def test_a_bad_content_length_is_a_400(provider, length):
    _, port = provider
    head = f"POST /v1/charges HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k\r\nContent-Length: {length}"
    answer = raw_request(port, head, b"{}")
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]


def test_a_body_over_the_bound_is_a_413(provider):
    _, port = provider
    head = f"POST /v1/charges HTTP/1.1\r\nHost: x\r\nContent-Length: {stub.MAX_BODY + 1}"
    assert raw_request(port, head).startswith(b"HTTP/1.1 413")
