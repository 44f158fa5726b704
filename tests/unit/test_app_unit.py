"""Unit tests of the reference app's pure functions (images/app/app.py); no database, no server.

app.py is a script, not a package module, so it is loaded by path. It imports without psycopg
(the harness's own environment need not have it); the tests that need psycopg skip without it.
"""

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from image_modules import load_image_module

APP_PATH = Path(__file__).resolve().parents[2] / "images" / "app" / "app.py"


def _load_app() -> ModuleType:
    return load_image_module("drillkit_reference_app", APP_PATH)


app = _load_app()

SECRET = b"unit-test-secret"
NOW = 1_800_000_000.0


# ---- passwords --------------------------------------------------------------------------------


def test_hash_password_format_and_known_vector() -> None:
    salt = bytes(range(16))
    encoded = app.hash_password("s3cret", salt=salt, iterations=1000)
    algorithm, iterations, salt_hex, hash_hex = encoded.split("$")
    assert (algorithm, iterations, salt_hex) == ("pbkdf2_sha256", "1000", salt.hex())
    expected = hashlib.pbkdf2_hmac("sha256", b"s3cret", salt, 1000, dklen=32)
    assert hash_hex == expected.hex()


def test_hash_password_uses_a_fresh_random_salt() -> None:
    first, second = app.hash_password("same"), app.hash_password("same")
    assert first != second
    assert len(first.split("$")[2]) == 32  # 16 bytes of salt, hex


def test_verify_password_accepts_the_right_password_only() -> None:
    encoded = app.hash_password("correct horse", iterations=1200)
    assert app.verify_password("correct horse", encoded) is True
    assert app.verify_password("correct horsE", encoded) is False
    assert app.verify_password("", encoded) is False


def test_verify_password_handles_non_ascii_passwords() -> None:
    encoded = app.hash_password("pässwörd ✓")
    assert app.verify_password("pässwörd ✓", encoded) is True
    assert app.verify_password("passwort", encoded) is False


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plaintext",
        "md5$1000$00$00",
        "pbkdf2_sha256$abc$00$00",
        "pbkdf2_sha256$0$00$00",
        "pbkdf2_sha256$1000$zz$00",
        "pbkdf2_sha256$1000$00$not-hex",
        "pbkdf2_sha256$1000$00",
        "pbkdf2_sha256$99999999999$00$00",
    ],
)
def test_verify_password_refuses_malformed_hashes(encoded: str) -> None:
    assert app.verify_password("anything", encoded) is False


def test_verify_password_refuses_a_truncated_hash() -> None:
    encoded = app.hash_password("pw")
    assert app.verify_password("pw", encoded[:-2]) is False


def test_hash_password_refuses_zero_iterations() -> None:
    with pytest.raises(ValueError, match="iterations"):
        app.hash_password("pw", iterations=0)


# ---- tokens -----------------------------------------------------------------------------------


def _payload(exp_in: float = 3600) -> dict[str, object]:
    return {"sub": 7, "email": "a@example.com", "iat": int(NOW), "exp": int(NOW + exp_in)}


def test_token_round_trip() -> None:
    token = app.sign_token(_payload(), SECRET)
    assert app.verify_token(token, SECRET, now=NOW) == _payload()


def test_token_shape_is_payload_dot_hmac_of_first_part() -> None:
    token = app.sign_token(_payload(), SECRET)
    body, signature = token.split(".")
    assert "=" not in token
    decoded = json.loads(app._b64url_decode(body))
    assert decoded == _payload()
    import hmac

    mac = hmac.new(SECRET, body.encode(), hashlib.sha256).digest()
    assert app._b64url_decode(signature) == mac


def test_issue_token_sets_sub_email_and_one_hour_expiry() -> None:
    token = app.issue_token(42, "u@example.com", SECRET, now=NOW)
    payload = app.verify_token(token, SECRET, now=NOW + 1)
    assert payload == {"sub": 42, "email": "u@example.com", "iat": int(NOW), "exp": int(NOW) + 3600}


def test_expired_token_is_refused() -> None:
    token = app.sign_token(_payload(exp_in=60), SECRET)
    assert app.verify_token(token, SECRET, now=NOW + 59) is not None
    assert app.verify_token(token, SECRET, now=NOW + 60) is None
    assert app.verify_token(token, SECRET, now=NOW + 3600) is None


def test_expiry_is_checked_against_the_clock_by_default() -> None:
    stale = {"sub": 1, "email": "x@example.com", "iat": 1, "exp": 2}
    assert app.verify_token(app.sign_token(stale, SECRET), SECRET) is None


def test_token_with_wrong_secret_is_refused() -> None:
    token = app.sign_token(_payload(), SECRET)
    assert app.verify_token(token, b"rotated-secret", now=NOW) is None


def test_tampered_payload_is_refused() -> None:
    token = app.sign_token(_payload(), SECRET)
    _, signature = token.split(".")
    forged_body = app._b64url_encode(json.dumps({**_payload(), "sub": 1}).encode())
    assert app.verify_token(f"{forged_body}.{signature}", SECRET, now=NOW) is None


def test_tampered_signature_is_refused() -> None:
    token = app.sign_token(_payload(), SECRET)
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert app.verify_token(flipped, SECRET, now=NOW) is None


@pytest.mark.parametrize(
    "token", ["", ".", "abc", "a.b.c", "....", "not base64!.sig", "é.é", "a" * 5000]
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert app.verify_token(token, SECRET, now=NOW) is None


@pytest.mark.parametrize(
    "payload",
    [
        [1, 2, 3],
        {"sub": 1, "email": "x"},
        {"sub": 1, "email": "x", "exp": "soon"},
        {"sub": 1, "email": "x", "exp": True},
    ],
)
def test_signed_but_unusable_payloads_are_refused(payload: object) -> None:
    body = app._b64url_encode(json.dumps(payload).encode())
    token = f"{body}.{app._token_signature(body, SECRET)}"
    assert app.verify_token(token, SECRET, now=NOW) is None


def test_empty_secret_neither_signs_nor_verifies() -> None:
    with pytest.raises(ValueError, match="secret"):
        app.sign_token(_payload(), b"")
    token = app.sign_token(_payload(), SECRET)
    assert app.verify_token(token, b"", now=NOW) is None


def test_principal_needs_integer_sub_and_string_email() -> None:
    good = app.issue_token(3, "p@example.com", SECRET)
    assert app.principal_from_token(good, SECRET) == app.Principal(3, "p@example.com")
    bad_sub = app.sign_token({"sub": "3", "email": "p@example.com", "exp": NOW * 2}, SECRET)
    assert app.principal_from_token(bad_sub, SECRET) is None
    assert app.principal_from_token(None, SECRET) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer   abc.def  ", "abc.def"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_bearer(header: str | None, expected: str | None) -> None:
    assert app.parse_bearer(header) == expected


# ---- request bodies ---------------------------------------------------------------------------


def test_parse_json_body() -> None:
    assert app.parse_json_body(b'{"a": 1}') == {"a": 1}
    for raw in (b"", b"{", b"\xff\xfe", b"nope"):
        with pytest.raises(app.ValidationError, match="valid JSON"):
            app.parse_json_body(raw)


def test_validate_login_body() -> None:
    body = {"email": "a@example.com", "password": "pw"}
    assert app.validate_login_body(body) == ("a@example.com", "pw")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"password": "pw"}, "email must be a string"),
        ({"email": "a@example.com"}, "password must be a string"),
        ({"email": 5, "password": "pw"}, "email must be a string"),
        ({"email": "", "password": "pw"}, "email must not be empty"),
        ({"email": "a\x00b", "password": "pw"}, "NUL"),
    ],
)
def test_validate_login_body_refuses(body: object, message: str) -> None:
    with pytest.raises(app.ValidationError, match=message):
        app.validate_login_body(body)


def test_validate_order_body() -> None:
    order = app.validate_order_body({"item": "book", "amount_cents": 0, "payload": "p", "x": 1})
    assert order == app.OrderInput(item="book", amount_cents=0, payload="p")
    top = app.validate_order_body({"item": "", "amount_cents": 2**31 - 1, "payload": ""})
    assert top.amount_cents == 2**31 - 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("order", "JSON object"),
        ({"amount_cents": 1, "payload": "p"}, "item must be a string"),
        ({"item": 3, "amount_cents": 1, "payload": "p"}, "item must be a string"),
        ({"item": "i", "payload": "p"}, "amount_cents must be an integer"),
        ({"item": "i", "amount_cents": "10", "payload": "p"}, "amount_cents must be an integer"),
        ({"item": "i", "amount_cents": 1.5, "payload": "p"}, "amount_cents must be an integer"),
        ({"item": "i", "amount_cents": True, "payload": "p"}, "amount_cents must be an integer"),
        ({"item": "i", "amount_cents": -1, "payload": "p"}, "between 0 and"),
        ({"item": "i", "amount_cents": 2**31, "payload": "p"}, "between 0 and"),
        ({"item": "i", "amount_cents": 1}, "payload must be a string"),
        ({"item": "i", "amount_cents": 1, "payload": None}, "payload must be a string"),
        ({"item": "i", "amount_cents": 1, "payload": "a\x00"}, "NUL"),
    ],
)
def test_validate_order_body_refuses(body: object, message: str) -> None:
    with pytest.raises(app.ValidationError, match=message):
        app.validate_order_body(body)


def test_validate_idempotency_key() -> None:
    assert app.validate_idempotency_key("  k-1  ") == "k-1"
    assert app.validate_idempotency_key("k" * 255) == "k" * 255
    for bad in (None, "", "   "):
        with pytest.raises(app.ValidationError, match="required"):
            app.validate_idempotency_key(bad)
    for bad in ("k" * 256, "a\x00b"):
        with pytest.raises(app.ValidationError, match="at most 255"):
            app.validate_idempotency_key(bad)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/orders/1", 1),
        ("/api/orders/9223372036854775807", 2**63 - 1),
        ("/api/orders/9223372036854775808", None),
        ("/api/orders/0", None),
        ("/api/orders/-1", None),
        ("/api/orders/abc", None),
        ("/api/orders/", None),
        ("/api/orders/1/x", None),
        ("/api/orders", None),
    ],
)
def test_parse_order_id(path: str, expected: int | None) -> None:
    assert app.parse_order_id(path) == expected


# ---- timestamps and the audit-file replay selection -------------------------------------------


def test_format_and_parse_timestamp_round_trip() -> None:
    moment = datetime(2026, 11, 23, 16, 41, 0, 5, tzinfo=UTC)
    text = app.format_timestamp(moment)
    assert text == "2026-11-23T16:41:00.000005Z"
    assert app.parse_timestamp(text) == moment


def test_parse_timestamp_offsets_and_naive_times() -> None:
    utc = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert app.parse_timestamp("2026-01-01T13:00:00+01:00") == utc
    assert app.parse_timestamp("2026-01-01T12:00:00") == utc  # naive is UTC
    with pytest.raises(ValueError):
        app.parse_timestamp("yesterday")


def test_parse_since() -> None:
    since = app.parse_since({"since": "2026-01-01T00:00:00Z"})
    assert since == datetime(2026, 1, 1, tzinfo=UTC)
    for body in ({}, {"since": 5}, [], {"since": "soon"}):
        with pytest.raises(app.ValidationError, match="since"):
            app.parse_since(body)


def _audit_line(at: datetime, key: str, action: str = "order.create") -> str:
    detail = {
        "order_id": 1,
        "idempotency_key": key,
        "item": "i",
        "amount_cents": 5,
        "payload": "p",
        "user_id": 1,
    }
    record = {"at": app.format_timestamp(at), "actor": "a", "action": action, "detail": detail}
    return json.dumps(record) + "\n"


def test_select_replay_records_filters_on_at_and_action() -> None:
    base = datetime(2026, 5, 1, tzinfo=UTC)
    lines = [
        _audit_line(base - timedelta(microseconds=1), "before"),
        _audit_line(base, "exactly"),
        _audit_line(base + timedelta(seconds=5), "after"),
        _audit_line(base + timedelta(seconds=6), "other", action="order.reconcile"),
        "\n",
    ]
    records, skipped = app.select_replay_records(lines, base)
    assert [r["detail"]["idempotency_key"] for r in records] == ["exactly", "after"]
    assert skipped == 0


def test_select_replay_records_skips_unusable_lines() -> None:
    base = datetime(2026, 5, 1, tzinfo=UTC)
    good = _audit_line(base, "good")
    no_at = json.dumps({"action": "order.create", "detail": {}})
    bad_detail = json.loads(good)
    bad_detail["detail"]["amount_cents"] = "5"
    lines = ["{torn line", "[]", no_at, json.dumps(bad_detail), good]
    records, skipped = app.select_replay_records(lines, base)
    assert [r["detail"]["idempotency_key"] for r in records] == ["good"]
    assert skipped == 4


# ---- configuration ----------------------------------------------------------------------------


def test_parse_hosts() -> None:
    assert app.parse_hosts("primary,replica\n") == (app.DbHost("primary"), app.DbHost("replica"))
    assert app.parse_hosts(" primary , , replica ") == (
        app.DbHost("primary", 5432),
        app.DbHost("replica", 5432),
    )
    assert app.parse_hosts("127.0.0.1:55432,replica") == (
        app.DbHost("127.0.0.1", 55432),
        app.DbHost("replica", 5432),
    )
    assert app.parse_hosts("db", default_port=6000) == (app.DbHost("db", 6000),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no database host"),
        (" , \n", "no database host"),
        ("db:x", "bad port"),
        ("db:70000", "bad port"),
        (":5432", "empty host"),
    ],
)
def test_parse_hosts_refuses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        app.parse_hosts(text)


def test_settings_defaults() -> None:
    settings = app.Settings.from_env({})
    assert (settings.host, settings.port, settings.db_name) == ("0.0.0.0", 8080, "app")
    assert settings.db_hosts_file == "/run/drillkit/config/db_hosts"
    assert settings.maintenance_file == "/run/drillkit/config/maintenance"
    assert settings.audit_file == "/var/log/app/audit.jsonl"
    assert (settings.connect_timeout_s, settings.statement_timeout_ms) == (1, 2000)
    assert settings.request_db_budget_s == pytest.approx(2.5)


def test_settings_refuses_bad_numbers() -> None:
    with pytest.raises(ValueError, match="APP_PORT"):
        app.Settings.from_env({"APP_PORT": "http"})
    with pytest.raises(ValueError, match="DB_CONNECT_TIMEOUT_S"):
        app.Settings.from_env({"DB_CONNECT_TIMEOUT_S": "0"})


def test_load_runtime_config_reads_and_strips_files(tmp_path: Path) -> None:
    files = {
        "hosts": "primary,replica\n",
        "user": "app\n",
        "password": " pw \n",
        "secret": "s3\n",
        "admin": "adm\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    settings = app.Settings.from_env(
        {
            "DB_HOSTS_FILE": str(tmp_path / "hosts"),
            "DB_USER_FILE": str(tmp_path / "user"),
            "DB_PASSWORD_FILE": str(tmp_path / "password"),
            "SECRET_FILE": str(tmp_path / "secret"),
            "ADMIN_TOKEN_FILE": str(tmp_path / "admin"),
        }
    )
    config = app.load_runtime_config(settings)
    assert config.hosts == (app.DbHost("primary"), app.DbHost("replica"))
    assert (config.db_user, config.db_password) == ("app", "pw")
    assert (config.secret, config.admin_token, config.problems) == (b"s3", "adm", ())


def test_load_runtime_config_reports_missing_files_without_values(tmp_path: Path) -> None:
    (tmp_path / "password").write_text("top-secret-value")
    settings = app.Settings.from_env(
        {
            "DB_HOSTS_FILE": str(tmp_path / "missing-hosts"),
            "DB_USER_FILE": str(tmp_path / "missing-user"),
            "DB_PASSWORD_FILE": str(tmp_path / "password"),
            "SECRET_FILE": str(tmp_path / "missing-secret"),
            "ADMIN_TOKEN_FILE": str(tmp_path / "missing-admin"),
        }
    )
    config = app.load_runtime_config(settings)
    assert config.hosts == ()
    assert config.secret == b"" and config.admin_token == ""
    assert len(config.problems) == 5  # 4 unreadable files + the empty host list
    assert not any("top-secret-value" in problem for problem in config.problems)


def test_log_line_quotes_strings_and_keeps_numbers(capsys: pytest.CaptureFixture[str]) -> None:
    app.log("request", method="GET", path="/api/health", status=200, duration_ms=1.5)
    line = capsys.readouterr().out
    assert line.endswith(' request method="GET" path="/api/health" status=200 duration_ms=1.5\n')
    assert line.count("\n") == 1


# ---- database error classification (needs psycopg only for its exception classes) ------------


def test_connection_errors_are_told_apart_from_statement_errors() -> None:
    psycopg = pytest.importorskip("psycopg")
    from psycopg import errors

    assert app.is_connection_error(errors.AdminShutdown("57P01"))
    assert app.is_connection_error(errors.ReadOnlySqlTransaction("25006"))
    assert app.is_connection_error(psycopg.OperationalError("server closed the connection"))
    assert app.is_connection_error(psycopg.InterfaceError("connection already closed"))
    assert not app.is_connection_error(errors.QueryCanceled("57014"))
    assert not app.is_connection_error(errors.UniqueViolation("23505"))


# ---- payments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("provider", ("provider", 8090, "provider")),
        (" provider-backup\n", ("provider-backup", 8090, "provider-backup")),
        ("pay.internal:9000", ("pay.internal", 9000, "pay.internal:9000")),
    ],
)
def test_parse_provider(text: str, expected: tuple[str, int, str]) -> None:
    target = app.parse_provider(text)
    assert (target.host, target.port, target.name) == expected


@pytest.mark.parametrize(
    "text", ["", " ", "-x", "a b", "provider:", "provider:0", "p:99999", "p:x"]
)
def test_parse_provider_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="payment provider"):
        app.parse_provider(text)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/orders/12/pay", 12),
        ("/api/orders/12", None),
        ("/api/orders/0/pay", None),
        ("/api/orders/12/pay/", None),
        ("/api/orders/x/pay", None),
        (f"/api/orders/{2**63}/pay", None),
    ],
)
def test_parse_pay_path(path: str, expected: int | None) -> None:
    assert app.parse_pay_path(path) == expected
    if expected is not None:
        assert app.parse_order_id(path) is None  # never taken for GET /api/orders/<id>


def test_payment_key_is_stable_per_order() -> None:
    assert app.payment_key("order-1") == app.payment_key("order-1") == "pay:order-1"
    assert app.payment_key("order-1") != app.payment_key("order-2")


def test_webhook_signature_round_trip_and_tampering() -> None:
    body = b'{"type":"charge.succeeded"}'
    header = app.webhook_signature(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert app.verify_webhook_signature(SECRET, body, header)
    assert app.verify_webhook_signature(SECRET, body, f" {header}\n")
    assert not app.verify_webhook_signature(SECRET, body + b" ", header)
    assert not app.verify_webhook_signature(b"other", body, header)
    assert not app.verify_webhook_signature(SECRET, body, None)
    assert not app.verify_webhook_signature(b"", body, app.webhook_signature(b"", body))


CHARGE = {
    "id": "ch_provider_000001",
    "idempotency_key": "pay:k1",
    "amount_cents": 100,
    "provider": "provider",
    "status": "succeeded",
}


def test_parse_charge_accepts_a_succeeded_charge_only() -> None:
    charge = app.parse_charge(CHARGE)
    assert charge == app.ChargeInfo("ch_provider_000001", "pay:k1", 100, "provider")
    for broken, message in (
        ({**CHARGE, "status": "failed"}, "not 'succeeded'"),
        ({**CHARGE, "amount_cents": "100"}, "amount_cents"),
        ({**CHARGE, "amount_cents": True}, "amount_cents"),
        ({**CHARGE, "id": ""}, "id or idempotency_key"),
        ({k: v for k, v in CHARGE.items() if k != "provider"}, "provider"),
    ):
        with pytest.raises(ValueError, match=message):
            app.parse_charge(broken)


def test_validate_webhook_body() -> None:
    assert (
        app.validate_webhook_body({"type": "charge.succeeded", "data": CHARGE}).id == CHARGE["id"]
    )
    with pytest.raises(app.ValidationError, match=r"charge\.succeeded"):
        app.validate_webhook_body({"type": "charge.refunded", "data": CHARGE})
    with pytest.raises(app.ValidationError, match="webhook data"):
        app.validate_webhook_body({"type": "charge.succeeded", "data": {"id": "x"}})


def test_succeeded_charge_picks_the_key_from_a_listing() -> None:
    other = {**CHARGE, "id": "ch_2", "idempotency_key": "pay:k2"}
    listing = {"data": [other, {"junk": 1}, CHARGE]}
    assert app.succeeded_charge(listing, "pay:k1") == app.parse_charge(CHARGE)
    assert app.succeeded_charge(listing, "pay:k3") is None
    with pytest.raises(ValueError, match="data"):
        app.succeeded_charge({"object": "list"}, "pay:k1")


def test_payments_are_off_without_a_provider_file(tmp_path: Path) -> None:
    settings = app.Settings.from_env(
        {
            "PAYMENT_PROVIDER_FILE": str(tmp_path / "absent"),
            "WEBHOOK_SECRET_FILE": str(tmp_path / "absent-too"),
        }
    )
    config = app.load_runtime_config(settings)
    assert config.payment_provider is None and config.webhook_secret == b""
    assert not any("payment" in p or "webhook" in p for p in config.problems)


def test_payment_provider_and_webhook_secret_are_read(tmp_path: Path) -> None:
    (tmp_path / "provider").write_text("provider-backup\n")
    (tmp_path / "whsec").write_text("wh-secret\n")
    settings = app.Settings.from_env(
        {
            "PAYMENT_PROVIDER_FILE": str(tmp_path / "provider"),
            "WEBHOOK_SECRET_FILE": str(tmp_path / "whsec"),
            "PAYMENT_TIMEOUT_MS": "750",
        }
    )
    config = app.load_runtime_config(settings)
    assert config.payment_provider == app.ProviderTarget("provider-backup")
    assert config.webhook_secret == b"wh-secret"
    assert settings.payment_timeout_ms == 750
    (tmp_path / "provider").write_text("bad host\n")
    problems = app.load_runtime_config(settings).problems
    assert any("payment provider file" in p for p in problems)


def test_payment_attempts_are_counted_in_flight_per_provider() -> None:
    stats = app.Stats()
    with stats.payment_attempt("provider"):
        assert stats.snapshot()["payments_in_flight"] == {"provider": 1}
        with stats.payment_attempt("provider-backup"):
            assert stats.snapshot()["payments_in_flight"] == {"provider": 1, "provider-backup": 1}
    snap = stats.snapshot()
    assert snap["payments_in_flight"] == {} and snap["payment_attempts"] == 2


def test_await_syn_answer_returns_on_accept_and_on_refusal() -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        app.await_syn_answer("127.0.0.1", port, 0.25, 1.0)  # accepted
    app.await_syn_answer("127.0.0.1", port, 0.25, 1.0)  # refused: libpq reports it


def test_await_syn_answer_resends_until_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[float] = []

    def unanswered(address: tuple[str, int], timeout: float) -> None:
        attempts.append(timeout)
        raise TimeoutError

    monkeypatch.setattr(app.socket, "create_connection", unanswered)
    with pytest.raises(app.DbUnavailableError, match=r"no answer from 10\.0\.0\.9:5432"):
        app.await_syn_answer("10.0.0.9", 5432, 0.01, 0.05)
    assert len(attempts) > 1
    assert all(t <= 0.05 for t in attempts)


def test_settings_handshake_timeout() -> None:
    assert app.Settings.from_env({}).handshake_timeout_ms == 250
    assert app.Settings.from_env({"DB_HANDSHAKE_TIMEOUT_MS": "400"}).handshake_timeout_ms == 400
    with pytest.raises(ValueError, match="DB_HANDSHAKE_TIMEOUT_MS"):
        app.Settings.from_env({"DB_HANDSHAKE_TIMEOUT_MS": "0"})
