"""The web front, live (stack option web: true): labels and loopback-only ports, the known-good
backup, the /api/ proxy, and the defacement actions and checks one by one against real nginx."""

import dataclasses
import hashlib
import secrets
from pathlib import Path
from typing import Any

import pytest
import requests

from drillkit.catalog.web import (
    DEFAULT_MESSAGE,
    check_site_integrity,
    deface_site,
    preview_url,
    restore_site_content,
    site_integrity,
    site_maintenance,
    verify_site_files,
    verify_site_served,
)
from drillkit.errors import CheckFailed, StepFailed
from drillkit.stack import engine
from drillkit.stack.reaping import leftovers
from drillkit.stack.spec import load_stack
from drillkit.stack.stack import Stack, StackOptions

SITE = Path(__file__).resolve().parents[2] / "images" / "web" / "site"


class Ctx:
    """What the web actions use of a DrillContext."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.state: dict[str, Any] = {}
        self.figures: dict[str, Any] = {}
        self.evidences: dict[str, str] = {}

    def figure(self, name: str, value: Any) -> None:
        self.figures[name] = value

    def evidence(self, name: str, text: str) -> None:
        self.evidences[name] = text


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run_id = "it" + secrets.token_hex(3)
    spec = load_stack()
    spec = dataclasses.replace(spec, database=dataclasses.replace(spec.database, replica=False))
    s = Stack(
        spec,
        run_id,
        tmp_path_factory.mktemp("run") / run_id,
        StackOptions(optional=frozenset({"web"})),
    )
    try:
        s.up()
        yield s
    finally:
        s.down()
        assert leftovers(run_id) == [], "teardown left resources behind"


def test_web_is_labelled_and_published_on_loopback_only(stack):
    assert stack.services[-1] == "web"
    c = stack.container("web")
    assert c.labels[engine.RUN_LABEL] == stack.run_id
    ports = c.attrs["NetworkSettings"]["Ports"]
    assert set(ports) == {"80/tcp", "443/tcp", "8081/tcp"}  # the site, the site over TLS, preview
    assert all(b["HostIp"] == "127.0.0.1" for bindings in ports.values() for b in bindings)
    vol = engine.client().volumes.get(stack.name("web-content"))
    assert vol.attrs["Labels"][engine.RUN_LABEL] == stack.run_id


def test_known_good_backup_is_the_shipped_site(stack):
    (backup,) = stack.web_backups
    shipped = {
        p.relative_to(SITE).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in SITE.rglob("*")
        if p.is_file()
    }
    assert backup.manifest == shipped
    sums = (backup.tarball.parent / "SHA256SUMS").read_text()
    assert all(f"{d}  ./{p}" in sums for p, d in shipped.items())


def test_api_is_proxied_to_the_app(stack):
    r = requests.get(stack.web_url + "/api/health", timeout=5)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_deface_maintenance_restore_verify(stack):
    ctx = Ctx(stack)
    assert "files match" in site_integrity(ctx)
    deface_site(ctx)
    stack.exec("web", "echo '<?php system($_GET[c]);' > /var/www/site/shell.php", user="root")
    with pytest.raises(CheckFailed, match=r"modified: index\.html, js/app\.js; added: shell\.php"):
        site_integrity(ctx)

    site_maintenance(ctx, enabled=True)
    public = requests.get(stack.web_url + "/about.html", timeout=5)
    assert public.status_code == 503 and DEFAULT_MESSAGE in public.text
    assert requests.get(stack.web_url + "/api/health", timeout=5).status_code == 200
    assert requests.get(preview_url(stack) + "/about.html", timeout=5).status_code == 200

    out = check_site_integrity(ctx)
    assert "modified: index.html, js/app.js" in out and "added: shell.php" in out
    assert ctx.figures["site_files_added"] == ["shell.php"]
    assert any("skimmer.invalid" in v for k, v in ctx.evidences.items() if "js/app.js" in k)

    restore_site_content(ctx, files=["index.html"])  # partial: the skimmer and the shell stay
    with pytest.raises(StepFailed, match=r"modified: js/app\.js; added: shell\.php"):
        verify_site_files(ctx)

    restore_site_content(ctx)
    assert "all 4 files match" in verify_site_files(ctx)
    verify_site_served(ctx, preview=True)
    with pytest.raises(CheckFailed, match="maintenance"):
        site_integrity(ctx)
    site_maintenance(ctx, enabled=False)
    verify_site_served(ctx)
    assert "files match" in site_integrity(ctx)
