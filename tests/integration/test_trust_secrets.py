"""Secrets stay secret end to end (issue 16, class 5): the credential-leak drill through the
plugin with --alluredir, then `drillkit finish` with the PDF: no secret the drill issued (the
rotated-out ones included) appears in any file under reports/, the PDF's text included; and
finish's own scan says so."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drillkit.reporting import ci
from drillkit.reporting.evidence import find_chromium
from drillkit.reporting.leakscan import pdf_texts

ROOT = Path(__file__).resolve().parents[2]


def test_no_secret_of_a_credential_leak_drill_reaches_any_report_file(tmp_path: Path) -> None:
    reports, secrets_out = tmp_path / "reports", tmp_path / "issued-secrets"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(Path(__file__).parent)]),
        "DRILLKIT_SESSION": "leakscan",
        "LEAKTEST_SECRETS_OUT": str(secrets_out),
    }
    drill = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(ROOT / "drills" / "test_drills.py"),
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-p",
            "leak_secrets_plugin",
            "--drill-select=credential-leak",
            f"--drill-results={reports}",
            f"--alluredir={reports / 'allure-results'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert drill.returncode == 0, drill.stdout[-3000:] + drill.stderr[-2000:]
    secrets = [s for s in secrets_out.read_text().splitlines() if s]
    assert len(secrets) >= 5  # the stack's secrets plus the rotated-in ones
    finish = [sys.executable, "-m", "drillkit.cli", "finish", "--results", str(reports)]
    finish += ["--session", "leakscan"]
    if find_chromium() is None:
        finish.append("--no-pdf")
    done = subprocess.run(finish, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == ci.EXIT_PASSED, done.stdout + done.stderr
    assert "secret scan: none of the" in done.stdout
    files = [p for p in reports.rglob("*") if p.is_file()]
    assert any(p.suffix == ".json" for p in files) and any("allure" in str(p) for p in files)
    leaked = [
        str(p.relative_to(reports))
        for p in files
        for s in secrets
        if s.encode() in p.read_bytes()
        or (p.suffix == ".pdf" and any(s.encode() in t for t in pdf_texts(p)))
    ]
    assert leaked == []
    pdfs = [p for p in files if p.suffix == ".pdf"]
    if find_chromium() is not None:
        assert pdfs and any(b"credential-leak" in t for p in pdfs for t in pdf_texts(p))
    else:
        pytest.skip("no chromium: the PDF was not rendered (the other files were scanned)")
