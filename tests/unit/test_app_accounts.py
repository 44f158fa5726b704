"""Unit tests of the reference app's account-security functions (lock, session revocation, forced
reset, notifications): pure, no database."""

from pathlib import Path
from types import ModuleType

import pytest
from image_modules import load_image_module

APP_PATH = Path(__file__).resolve().parents[2] / "images" / "app" / "app.py"
SECRET = b"unit-test-secret"
NOW = 1_800_000_000.0


def _load_app() -> ModuleType:
    return load_image_module("drillkit_reference_app_accounts", APP_PATH)


app = _load_app()


def test_generation_zero_token_has_no_gen_claim() -> None:
    payload = app.verify_token(app.issue_token(5, "a@b", SECRET, now=NOW), SECRET, now=NOW)
    assert payload is not None and "gen" not in payload


def test_token_carries_the_session_generation() -> None:
    token = app.issue_token(5, "a@b", SECRET, now=NOW, generation=3)
    principal = app.principal_from_token(token, SECRET)
    assert principal is not None and principal.generation == 3


@pytest.mark.parametrize("gen", [-1, True, "2", 1.5])
def test_malformed_generation_is_refused(gen: object) -> None:
    import time

    now = int(time.time())
    token = app.sign_token(
        {"sub": 1, "email": "a@b", "iat": now, "exp": now + 60, "gen": gen}, SECRET
    )
    assert app.principal_from_token(token, SECRET) is None


def test_session_refusal() -> None:
    p0, p1 = app.Principal(1, "a@b"), app.Principal(1, "a@b", generation=1)
    assert app.account_session_refusal(None, p0) is None
    assert app.account_session_refusal(None, p1) == "session revoked"
    assert app.account_session_refusal(app.AccountState(generation=1), p0) == "session revoked"
    assert app.account_session_refusal(app.AccountState(generation=1), p1) is None
    locked = app.AccountState(locked=True, generation=1)
    assert app.account_session_refusal(locked, p1) == "account locked"


def test_reset_required_hash_never_verifies() -> None:
    assert not app.verify_password("", app.RESET_REQUIRED_HASH)
    assert not app.verify_password(app.RESET_REQUIRED_HASH, app.RESET_REQUIRED_HASH)


def test_reset_body_validation() -> None:
    assert app.validate_reset_body({"code": "c", "password": "12345678"}) == ("c", "12345678")
    for bad in ({"code": "", "password": "12345678"}, {"code": "c", "password": "short"}, [], {}):
        with pytest.raises(app.ValidationError):
            app.validate_reset_body(bad)


def test_reset_code_is_stored_hashed() -> None:
    stored = app.reset_token_hash("code")
    assert stored != "code" and len(stored) == 64 and stored == app.reset_token_hash("code")


def test_notify_body_validation() -> None:
    body = {"kind": "k", "subject": "s", "message": "m"}
    assert app.validate_notify_body(body) == ("email", "k", "s", "m")
    assert app.validate_notify_body({**body, "channel": "sms"})[0] == "sms"
    for bad in (
        {**body, "channel": "pigeon"},
        {**body, "subject": ""},
        {**body, "message": "x" * (app.MAX_NOTIFICATION_TEXT + 1)},
        {"kind": "k"},
    ):
        with pytest.raises(app.ValidationError):
            app.validate_notify_body(bad)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/admin/users/7/lock", (7, "lock")),
        ("/api/admin/users/7/security", (7, "security")),
        ("/api/admin/users/7/force-reset", (7, "force-reset")),
        ("/api/admin/users/0/lock", None),
        ("/api/admin/users/7/delete", None),
        ("/api/admin/users/99999999999999999999/lock", None),
        ("/api/admin/users/7/lock/x", None),
    ],
)
def test_parse_user_admin_path(path: str, expected: object) -> None:
    assert app.parse_user_admin_path(path) == expected
