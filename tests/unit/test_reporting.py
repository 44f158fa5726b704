"""Unit tests of the reporters (drillkit.reporting): charts, Allure, evidence pack, history.

No containers: every DrillResult here is synthetic (`make_result`), shaped like a real drill.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drillkit.core.measure import AckedWrite, LedgerOutcome, Objectives, Sample, judge, measure
from drillkit.core.results import CheckResult, DrillResult, StepRecord

T0 = 5000.0
"""The drill clock (monotonic seconds) at the first probe sample's start."""
WALL0 = datetime(2026, 11, 20, 14, 0, 0, tzinfo=UTC).timestamp()
FAULT_AT, BACK_AT = 3.0, 5.0
CHECKLIST = [
    ("responding", "All systems responding"),
    ("key-functionality", "Key functionality working"),
    ("performance", "Performance within normal range of the baseline"),
    ("no-error-spike", "No error spike in the logs after recovery"),
    ("database", "Database operating normally (primary writable, replica streaming, amcheck)"),
    ("authentication", "User authentication working"),
    ("journeys", "Critical user journeys working"),
    ("detected", "Detected within the detection objective"),
    ("rto", "Recovered within RTO"),
]


def make_result(
    *,
    scenario_id: str = "db-kill-restart",
    outage: bool = True,
    lost: int = 3,
    rto_objective: float = 30.0,
    rpo_objective: float = 5.0,
    failed_checks: tuple[str, ...] = (),
    secret: str | None = None,
) -> DrillResult:
    """A realistic finished drill: 10 s of probes every 0.1 s (availability and journey), an outage
    from 3 s to 5 s, 500 acknowledged writes of which `lost` vanished, 1 fault step, 2 recovery
    steps and the 9-item checklist."""
    samples: list[Sample] = []
    for i in range(1, 101):
        t = i * 0.1
        down = outage and FAULT_AT < t <= BACK_AT
        samples.append(
            Sample(
                "availability",
                T0 + t,
                not down,
                0.004 + 0.001 * (i % 3),
                "connection refused" if down else None,
            )
        )
        samples.append(
            Sample(
                "journey",
                T0 + t + 0.03,
                not down,
                (0.5 if down else 0.022 + 0.002 * (i % 5)),
                "timeout after 0.5 s" if down else None,
            )
        )
    acked = []
    up_times = [i * 0.016 for i in range(1, 626)]
    up_times = [t for t in up_times if not (outage and FAULT_AT <= t <= BACK_AT)][:500]
    for n, t in enumerate(up_times):
        acked.append(
            AckedWrite(f"order-{n:05d}", hashlib.sha256(str(n).encode()).hexdigest(), T0 + t)
        )
    before_fault = [w for w in acked if w.t_ack < T0 + FAULT_AT]
    lost_writes = before_fault[-lost:] if lost else []
    t_fault = T0 + FAULT_AT
    m = measure(samples, LedgerOutcome(acked=len(acked), lost=tuple(lost_writes)), t_fault, k=5)
    objectives = Objectives(rto_s=rto_objective, rpo_s=rpo_objective, detection_s=1.0)
    checks = [
        CheckResult(
            cid,
            title,
            cid not in failed_checks,
            "failed: 3 errors in the app log" if cid in failed_checks else "ok",
        )
        for cid, title in CHECKLIST
    ]
    verdict = judge(m, objectives, [f"{c.id} ({c.detail})" for c in checks if not c.ok])
    steps = [
        StepRecord(
            "Kill the postmaster (SIGKILL)",
            "kill_postmaster",
            "fault",
            t_fault,
            t_fault + 0.05,
            True,
            None,
            "killed pid 1",
        ),
        StepRecord(
            "Restart PostgreSQL",
            "restart_service",
            "recovery",
            T0 + 3.4,
            T0 + 4.6,
            True,
            None,
            "primary accepting connections",
        ),
        StepRecord(
            "Verify application health",
            "http_check",
            "recovery",
            T0 + 4.6,
            T0 + 5.1,
            True,
            None,
            "200 OK",
        ),
    ]
    markers = {"steady": T0 + 0.1, "fault": t_fault}
    if m.t_detected is not None and outage:
        markers["detected"] = m.t_detected
    if m.t_recovered is not None:
        markers["recovered"] = m.t_recovered
    environment = {
        "docker_version": "20.10.24",
        "postgres_version": "15.14",
        "engine": "docker",
        "image_primary": "sha256:0123abcd",
        "git_commit": "abc1234",
    }
    logs = {
        "app": "2026-11-20 14:00:03 ERROR connection refused\n2026-11-20 14:00:05 INFO reconnected\n",
        "primary": "LOG:  database system is ready to accept connections\n",
    }
    evidence = {"fault output": "kill -9 1 -> ok", "audit log copy": "order-00001 created\n"}
    if secret:
        environment["app_db_password"] = secret
        logs["app"] += f"connecting with password={secret}\n"
        evidence["leaked"] = f"token {secret}"
    return DrillResult(
        run_id="run-20261120-1400",
        scenario_id=scenario_id,
        title="Database outage: primary killed, restarted",
        severity="P0",
        failure_class="database-outage",
        tags=["nightly", "postgres", "restart"],
        source={
            "runbook": "000",
            "section": "Procedure 1: Complete System Outage",
            "file": "seeds/000_920832fa8850e687.txt",
        },
        scenario_text=f"id: {scenario_id}\nfault:\n  action: kill_postmaster\n",
        objectives=objectives,
        t0_monotonic=T0,
        t0_wall=WALL0,
        status="passed" if verdict.passed else "failed",
        phase="finished",
        breaches=verdict.breaches,
        category=verdict.category,
        measurement=m,
        steps=steps,
        checks=checks,
        samples=samples,
        acked=acked,
        lost=list(lost_writes),
        markers=markers,
        environment=environment,
        logs=logs,
        pg_errors=["FATAL:  the database system is starting up"] if outage else [],
        evidence=evidence,
        extra={"max_replication_lag_s": 0.12},
        wall_end=WALL0 + 12.0,
    )


def make_error_result() -> DrillResult:
    """A drill whose environment broke before anything was measured."""
    return DrillResult(
        run_id="run-20261120-1400",
        scenario_id="wal-volume-full",
        title="WAL volume full",
        severity="P1",
        failure_class="disk-full",
        tags=["quarterly"],
        source={"runbook": "002", "section": "Database failure", "file": "seeds/002_x.txt"},
        scenario_text="id: wal-volume-full\n",
        objectives=Objectives(rto_s=60.0, rpo_s=0.0),
        t0_monotonic=T0,
        t0_wall=WALL0,
        status="error",
        phase="provisioned",
        error="EnvironmentBroken: loop device unavailable\nTraceback ...",
        category="environment",
        wall_end=WALL0 + 3.0,
    )


def with_failed_step(result: DrillResult) -> DrillResult:
    steps = list(result.steps)
    steps[2] = dataclasses.replace(steps[2], ok=False, error="HTTP 503 from /health")
    return dataclasses.replace(result, steps=steps)


def decode_png(data: bytes):
    import matplotlib.image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(io.BytesIO(data), format="png")


def assert_not_blank(data: bytes, size: tuple[int, int] | None = None) -> None:
    pixels = decode_png(data)
    if size is not None:
        assert (pixels.shape[1], pixels.shape[0]) == size
    rgb = pixels[..., :3].reshape(-1, 3)
    assert rgb.std() > 0.05, "image is (nearly) one colour"
    assert len({tuple(p) for p in rgb[:: max(1, len(rgb) // 20000)]}) > 20


# ---- charts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "result",
    [
        make_result(),
        make_result(outage=False, lost=0),
        make_result(rto_objective=1.0, rpo_objective=0.0),
        make_error_result(),
    ],
    ids=["outage", "no-failures-no-loss", "breached", "error-no-measurement"],
)
def test_timeline_png_is_a_non_blank_1200x500_png(result: DrillResult) -> None:
    from drillkit.reporting.charts import timeline_png

    data = timeline_png(result)
    pixels = decode_png(data)
    assert pixels.shape[:2] == (500, 1200)
    assert_not_blank(data)


def test_timeline_shows_outage_in_red_and_clean_drill_without_red_lanes() -> None:
    from drillkit.reporting.charts import timeline_png

    def red_share(data: bytes) -> float:
        rgb = decode_png(data)[..., :3]
        red = (abs(rgb[..., 0] - 0xC6 / 255) < 0.02) & (abs(rgb[..., 1] - 0x28 / 255) < 0.02)
        return float(red.mean())

    assert red_share(timeline_png(make_result())) > 0.01
    assert red_share(timeline_png(make_result(outage=False, lost=0))) < 0.003


def test_trend_png_with_runs_missing_values_and_no_runs() -> None:
    from drillkit.reporting.charts import trend_png

    rows = [
        {
            "scenario_id": "db-kill-restart",
            "wall_end": f"2026-0{m}-01T10:00:00+00:00",
            "status": status,
            "rto_s": rto,
            "rpo_s": rpo,
            "objectives": {"rto_s": 30.0, "rpo_s": 5.0, "detection_s": None},
        }
        for m, status, rto, rpo in [
            (1, "passed", 2.1, 0.0),
            (4, "failed", None, 7.0),
            (7, "passed", 3.4, 0.4),
            (9, "error", None, None),
        ]
    ]
    rows.append({"scenario_id": "other", "wall_end": "2026-02-01T00:00:00+00:00"})
    assert_not_blank(trend_png(rows, "db-kill-restart"))
    assert_not_blank(trend_png([], "db-kill-restart"))


# ---- controls ---------------------------------------------------------------------------------


def test_control_table_covers_the_required_controls() -> None:
    from drillkit.reporting.controls import CONTROLS, drills_for

    got = {(c.framework, c.control_id) for c in CONTROLS}
    assert got == {
        ("SOC 2", "A1.3"),
        ("SOC 2", "CC7.5"),
        ("ISO/IEC 27001:2022", "A.5.29"),
        ("ISO/IEC 27001:2022", "A.5.30"),
        ("ISO/IEC 27001:2022", "A.8.13"),
        ("ISO/IEC 27001:2022", "A.8.14"),
        ("HIPAA", "164.308(a)(7)(ii)(D)"),
        ("PCI DSS 4.0", "12.10.2"),
        ("DORA", "Art. 11"),
        ("DORA", "Art. 12"),
        ("DORA", "Art. 24"),
        ("DORA", "Art. 25"),
    }
    for control in CONTROLS:
        assert control.requirement.endswith(".") and control.requirement.count(". ") == 0
        assert control.evidence
    by_id = {c.control_id: c for c in CONTROLS}
    restart = make_result()
    failover = dataclasses.replace(
        make_result(scenario_id="replica-promotion"), failure_class="failover", tags=["quarterly"]
    )
    pitr = dataclasses.replace(
        make_result(scenario_id="pitr-logical-corruption"), failure_class="data-corruption", tags=[]
    )
    leak = dataclasses.replace(
        make_result(scenario_id="jwt-secret-leak"), failure_class="security-breach", tags=[]
    )
    drills = [restart, failover, pitr, leak]
    assert drills_for(by_id["A1.3"], drills) == [d.scenario_id for d in drills]
    assert drills_for(by_id["A.8.14"], drills) == ["replica-promotion"]
    assert drills_for(by_id["A.8.13"], drills) == ["pitr-logical-corruption"]
    assert drills_for(by_id["CC7.5"], drills) == ["jwt-secret-leak"]


# ---- evidence pack ----------------------------------------------------------------------------

ENVIRONMENT = {"host": "ci-runner-1", "docker_version": "20.10.24", "drillkit": "0.1.0"}


@pytest.fixture(scope="module")
def built_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One pack for the module (charts take a while); tests get a copy from `pack`."""
    from drillkit.reporting.evidence import build_pack

    results = [
        make_result(),
        make_result(
            scenario_id="pitr-restore",
            rto_objective=1.0,
            rpo_objective=0.0,
            failed_checks=("no-error-spike",),
        ),
        make_error_result(),
    ]
    out = tmp_path_factory.mktemp("built") / "pack"
    return build_pack(
        results, out, "alice@example.org", "run-20261120-1400", ENVIRONMENT, pdf=False
    )


@pytest.fixture
def pack(built_pack: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built_pack, tmp_path / "pack"))


def test_pack_has_every_artifact_and_verifies_clean(pack: Path) -> None:
    from drillkit.reporting.evidence import verify_pack

    names = {p.name for p in pack.iterdir()}
    assert names == {
        "index.html",
        "manifest.json",
        "manifest.sha256",
        "timeline-db-kill-restart.png",
        "timeline-pitr-restore.png",
        "timeline-wal-volume-full.png",
        "drill-db-kill-restart.json",
        "drill-pitr-restore.json",
        "drill-wal-volume-full.json",
    }
    manifest_bytes = (pack / "manifest.json").read_bytes()
    manifest = json.loads(manifest_bytes)
    assert set(manifest["artifacts"]) == names - {"manifest.json", "manifest.sha256"}
    for name, entry in manifest["artifacts"].items():
        assert entry["sha256"] == hashlib.sha256((pack / name).read_bytes()).hexdigest()
    assert manifest["pdf"]["status"] == "skipped"
    assert (pack / "manifest.sha256").read_text() == (
        f"{hashlib.sha256(manifest_bytes).hexdigest()}  manifest.json\n"
    )
    assert verify_pack(pack) == []
    loaded = DrillResult.load(pack / "drill-db-kill-restart.json")
    assert loaded.measurement == make_result().measurement
    for name in ("timeline-db-kill-restart.png", "timeline-wal-volume-full.png"):
        assert_not_blank((pack / name).read_bytes())


def test_build_leaves_no_temporary_folder(built_pack: Path) -> None:
    assert [p.name for p in built_pack.parent.iterdir()] == ["pack"]


def test_index_html_content(pack: Path) -> None:
    page = (pack / "index.html").read_text()
    for text in (
        "run-20261120-1400",
        "alice@example.org",
        "ci-runner-1",
        "db-kill-restart",
        "pitr-restore",
        "wal-volume-full",
        'src="timeline-db-kill-restart.png"',
        "2.13 s / 30.0 s",
        "3 lost, 0 altered of 500 acknowledged",
        "9/9 passed",
        "8/9 passed",
        "RTO 2.13 s &gt; objective 1.00 s",
        "PASSED",
        "FAILED",
        "ERROR",
        "A1.3",
        "CC7.5",
        "A.5.29",
        "A.5.30",
        "A.8.13",
        "A.8.14",
        "164.308(a)(7)(ii)(D)",
        "12.10.2",
        "Art. 11",
        "Art. 12",
        "Art. 24",
        "Art. 25",
    ):
        assert text in page, text
    # the headings of runbook 000's Incident Report Template
    for heading in (
        "Incident Details",
        "Date/Time",
        "Severity",
        "Duration",
        "Affected Services",
        "Root Cause",
        "Resolution",
        "Impact",
        "Timeline",
        "Detection",
        "Response",
        "Verification",
        "Lessons Learned",
    ):
        assert f">{heading}<" in page, heading
    assert "2026-11-20 14:00:03.000 UTC" in page  # fault injection, wall clock
    assert "Restart PostgreSQL — started T+0.40 s" in page
    assert "Kill the postmaster (SIGKILL)" in page
    assert "http://" not in page and "https://" not in page, "the page must load nothing"


def test_pack_escapes_html(tmp_path: Path) -> None:
    from drillkit.reporting.evidence import build_pack

    hostile = dataclasses.replace(make_result(), title="<script>alert(1)</script> & co")
    out = build_pack([hostile], tmp_path / "p", "<b>op</b>", "r1", {"k": "<img src=x>"}, pdf=False)
    page = (out / "index.html").read_text()
    assert "<script>" not in page and "<b>op</b>" not in page and "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page


def test_tampering_one_png_byte_is_named(pack: Path) -> None:
    from drillkit.reporting.evidence import verify_pack

    png = pack / "timeline-db-kill-restart.png"
    data = bytearray(png.read_bytes())
    data[len(data) // 2] ^= 0x01
    png.write_bytes(bytes(data))
    assert verify_pack(pack) == ["tampered: timeline-db-kill-restart.png (sha256 differs)"]


def test_deleted_and_added_files_are_named(pack: Path) -> None:
    from drillkit.reporting.evidence import verify_pack

    (pack / "drill-pitr-restore.json").unlink()
    (pack / "notes.txt").write_text("added later\n")
    assert verify_pack(pack) == ["missing: drill-pitr-restore.json", "unlisted: notes.txt"]


def test_edited_manifest_is_caught_even_when_its_hash_file_is_rewritten(pack: Path) -> None:
    from drillkit.reporting.evidence import pack_hash, verify_pack

    issued = pack_hash(pack)
    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["operator"] = "mallory"
    (pack / "manifest.json").write_text(json.dumps(manifest))
    assert verify_pack(pack) == ["manifest.json changed"]

    # a forger who rewrites manifest.sha256 too is caught by the hash recorded at issue
    new = hashlib.sha256((pack / "manifest.json").read_bytes()).hexdigest()
    (pack / "manifest.sha256").write_text(f"{new}  manifest.json\n")
    assert verify_pack(pack) == []
    assert verify_pack(pack, expected_hash=issued) == ["pack hash differs from the recorded one"]


def test_missing_manifest_hash_and_manifest(pack: Path) -> None:
    from drillkit.reporting.evidence import verify_pack

    (pack / "manifest.sha256").unlink()
    assert verify_pack(pack) == ["missing: manifest.sha256"]
    (pack / "manifest.json").unlink()
    assert verify_pack(pack) == ["missing: manifest.json"]


def test_build_pack_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    from drillkit.reporting.evidence import build_pack

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "old.txt").write_text("x")
    with pytest.raises(FileExistsError):
        build_pack([make_result()], tmp_path / "p", "op", "r", {}, pdf=False)
    (tmp_path / "q").mkdir()  # an empty folder is fine
    assert build_pack([make_result()], tmp_path / "q", "op", "r", {}, pdf=False).is_dir()
    # replace=True swaps a previous pack for the new one
    out = build_pack([make_error_result()], tmp_path / "p", "op", "r", {}, pdf=False, replace=True)
    assert not (out / "old.txt").exists() and (out / "drill-wal-volume-full.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "q"]


SECRET = "Zq9xTOPSECRETxW4r7yKp2bNv"


def test_redacted_secrets_appear_in_no_pack_file(tmp_path: Path) -> None:
    from drillkit.reporting.evidence import build_pack, scan_for_secrets, verify_pack

    leaky = make_result(secret=SECRET)
    leaky = dataclasses.replace(leaky, title=f"drill with {SECRET} in its title")
    env = {**ENVIRONMENT, "note": f"dsn postgres://app:{SECRET}@db/app"}
    out = build_pack(
        [leaky, make_error_result()],
        tmp_path / "pack",
        f"op {SECRET}",
        "r1",
        env,
        redact=[SECRET, ""],
        pdf=False,
    )
    assert scan_for_secrets(out, [SECRET]) == []
    assert "[redacted]" in (out / "drill-db-kill-restart.json").read_text()
    assert "[redacted]" in (out / "index.html").read_text()
    assert verify_pack(out) == []

    # the scanner does find a secret: one planted afterwards, and an unredacted pack's files
    (out / "planted.txt").write_text(f"oops {SECRET}\n")
    assert scan_for_secrets(out, [SECRET, "not-there"]) == ["planted.txt"]
    raw = build_pack([leaky], tmp_path / "raw", "op", "r1", {}, pdf=False)
    assert "drill-db-kill-restart.json" in scan_for_secrets(raw, [SECRET])


def test_scan_for_secrets_finds_escaped_forms(tmp_path: Path) -> None:
    from drillkit.reporting.evidence import scan_for_secrets

    secret = 'p&ss"word'
    (tmp_path / "a.html").write_text("<td>p&amp;ss&quot;word</td>")
    (tmp_path / "b.json").write_text(json.dumps({"x": secret}))
    (tmp_path / "c.txt").write_text("clean")
    assert scan_for_secrets(tmp_path, [secret]) == ["a.html", "b.json"]
    assert scan_for_secrets(tmp_path, []) == []


def test_pack_with_history_has_trends_and_overdue_list(tmp_path: Path) -> None:
    from drillkit.reporting.evidence import build_pack, verify_pack
    from drillkit.reporting.history import history_row

    rows = [history_row(make_result()), history_row(make_error_result())]
    out = build_pack(
        [make_result()],
        tmp_path / "p",
        "op",
        "r1",
        {},
        pdf=False,
        history=rows,
        stale=[("wal-volume-full", "never passed")],
    )
    assert_not_blank((out / "trend-db-kill-restart.png").read_bytes())
    page = (out / "index.html").read_text()
    assert "Drills overdue" in page and "never passed" in page
    assert 'src="trend-db-kill-restart.png"' in page
    assert verify_pack(out) == []


def test_pdf_is_skipped_and_said_so_without_chromium(tmp_path: Path, monkeypatch) -> None:
    from drillkit.reporting import evidence

    monkeypatch.setattr(evidence.render, "find_chromium", lambda: None)
    out = evidence.build_pack([make_result()], tmp_path / "p", "op", "r1", {})
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pdf"]["status"] == "skipped"
    assert "chromium not installed" in manifest["pdf"]["reason"]
    assert not (out / "evidence.pdf").exists()
    assert evidence.verify_pack(out) == []


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium is not installed (apt-get install -y chromium): PDF/PNG rendering untested",
)


@needs_chromium
def test_pack_pdf_and_index_screenshot_with_chromium(tmp_path: Path) -> None:
    from drillkit.reporting.evidence import build_pack, chromium_render, verify_pack

    out = build_pack(
        [make_result(), make_error_result()], tmp_path / "pack", "op", "r1", ENVIRONMENT
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pdf"]["status"] == "rendered", manifest["pdf"]
    pdf = (out / "evidence.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000
    assert "evidence.pdf" in manifest["artifacts"]
    assert verify_pack(out) == []

    shot = tmp_path / "index.png"
    chromium_render(out / "index.html", shot, "png", window=(1280, 1600))
    data = shot.read_bytes()
    pixels = decode_png(data)
    assert pixels.shape[:2] == (1600, 1280)
    assert_not_blank(data)


# ---- history ----------------------------------------------------------------------------------


def test_append_and_load_history(tmp_path: Path) -> None:
    from drillkit.reporting.history import append_history, load_history

    path = tmp_path / "reports" / "history.jsonl"
    assert load_history(path) == []
    append_history(path, make_result())
    append_history(path, make_error_result())
    rows = load_history(path)
    assert [r["scenario_id"] for r in rows] == ["db-kill-restart", "wal-volume-full"]
    first, error = rows
    assert first["run_id"] == "run-20261120-1400"
    assert first["wall_end"] == "2026-11-20T14:00:12+00:00"
    assert first["status"] == "passed" and first["lost"] == 3
    assert first["rto_s"] == pytest.approx(2.13) and first["mttd_s"] == pytest.approx(0.1)
    assert first["objectives"] == {"rto_s": 30.0, "rpo_s": 5.0, "detection_s": 1.0}
    assert error["rto_s"] is None and error["status"] == "error"
    assert set(first) >= {
        "run_id",
        "scenario_id",
        "wall_end",
        "status",
        "rto_s",
        "rpo_s",
        "mttd_s",
        "lost",
        "objectives",
    }


def test_concurrent_appends_lose_nothing(tmp_path: Path) -> None:
    from drillkit.reporting.history import append_history, load_history

    path = tmp_path / "history.jsonl"
    result = make_result()

    def worker() -> None:
        for _ in range(25):
            append_history(path, result)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path;"
            "from test_reporting import make_result;"
            "from drillkit.reporting.history import append_history;"
            "[append_history(Path(sys.argv[1]), make_result()) for _ in range(25)]",
            str(path),
            str(Path(__file__).parent),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    lines = path.read_bytes().splitlines()
    assert len(lines) == 225 and all(json.loads(line) for line in lines)
    assert len(load_history(path)) == 225


def test_a_torn_line_is_skipped_and_the_next_append_starts_afresh(tmp_path: Path) -> None:
    from drillkit.reporting.history import append_history, load_history

    path = tmp_path / "history.jsonl"
    append_history(path, make_result())
    with open(path, "a") as f:
        f.write('{"run_id": "torn", "scen')
    append_history(path, make_error_result())
    assert [r["scenario_id"] for r in load_history(path)] == ["db-kill-restart", "wal-volume-full"]


def _row(scenario_id: str, status: str, when: datetime) -> dict:
    return {
        "scenario_id": scenario_id,
        "status": status,
        "wall_end": when.isoformat(timespec="seconds"),
        "rto_s": 1.0,
        "rpo_s": 0.0,
    }


def test_stale_scenarios() -> None:
    from drillkit.reporting.history import stale_scenarios

    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    history = [
        _row("failed-only", "failed", now - timedelta(days=1)),
        _row("old-pass", "passed", now - timedelta(days=100)),
        _row("old-pass", "failed", now - timedelta(days=2)),
        _row("fresh", "passed", now - timedelta(days=400)),
        _row("fresh", "passed", now - timedelta(days=1)),
        _row("edge", "passed", now - timedelta(days=92)),
    ]
    ids = ["never-run", "failed-only", "old-pass", "fresh", "edge"]
    assert stale_scenarios(history, ids, now=now) == [
        ("never-run", "never passed"),
        ("failed-only", "never passed"),
        ("old-pass", "last pass 2026-08-15, 100 days ago"),
    ]
    assert stale_scenarios(history, ["fresh"], max_age_days=0, now=now) == [
        ("fresh", "last pass 2026-11-22, 1 day ago")
    ]
    # naive `now` is UTC; the default `now` is the current time
    assert stale_scenarios(history, ["edge"], now=now.replace(tzinfo=None)) == []
    recent = [_row("x", "passed", datetime.now(UTC) - timedelta(days=1))]
    assert stale_scenarios(recent, ["x"]) == []


# ---- Allure -----------------------------------------------------------------------------------


def test_attach_to_allure_runs_inside_a_test() -> None:
    """Without --alluredir every allure call is a no-op: this proves nothing raises."""
    from drillkit.reporting.allure_report import attach_to_allure

    attach_to_allure(make_result())
    attach_to_allure(with_failed_step(make_result(rto_objective=1.0)))
    attach_to_allure(make_error_result())


def test_step_plan_titles_carry_duration_and_outcome() -> None:
    from drillkit.reporting.allure_report import step_plan

    titles = [line.title for line in step_plan(with_failed_step(make_result()))]
    assert titles[:2] == [
        "steady state: probes passing — T−2.90 s (2026-11-20 14:00:00.100 UTC)",
        "fault injection began — T+0.00 s (2026-11-20 14:00:03.000 UTC)",
    ]
    assert "fault 1/1: Kill the postmaster (SIGKILL) — 0.05 s — ok" in titles
    assert "recovery 1/2: Restart PostgreSQL — 1.20 s — ok" in titles
    assert "recovery 2/2: Verify application health — 0.50 s — FAILED" in titles
    assert titles.index("recovery 1/2: Restart PostgreSQL — 1.20 s — ok") < titles.index(
        "recovered: probes passing again — RTO 2.13 s (objective 30.0 s) — ok"
    )
    failed = [line for line in step_plan(with_failed_step(make_result())) if line.failed]
    assert [line.error for line in failed] == ["HTTP 503 from /health"]
    assert titles[-1] == "verdict — PASSED"
    error_titles = [line.title for line in step_plan(make_error_result())]
    assert error_titles == [
        "drill error — FAILED: EnvironmentBroken: loop device unavailable",
        "verdict — ERROR",
    ]


CHILD_TEST = """
from pathlib import Path
from drillkit.core.results import DrillResult
from drillkit.reporting.allure_report import attach_to_allure

def test_drill():
    result = DrillResult.load(Path(__file__).with_name("result.json"))
    attach_to_allure(result, redact=[{secret!r}])
"""


def test_attach_to_allure_records_labels_steps_and_attachments(tmp_path: Path) -> None:
    """A child pytest run with --alluredir: what Allure actually receives."""
    result = with_failed_step(make_result(rto_objective=1.0, secret=SECRET))
    result.save(tmp_path / "result.json")
    (tmp_path / "test_child.py").write_text(CHILD_TEST.format(secret=SECRET))
    out = tmp_path / "allure-results"
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:drillkit",
            f"--alluredir={out}",
            str(tmp_path / "test_child.py"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert child.returncode == 0, child.stdout + child.stderr
    (record_path,) = out.glob("*-result.json")
    record = json.loads(record_path.read_text())
    labels = {(label["name"], label["value"]) for label in record["labels"]}
    assert {
        ("epic", "Disaster-recovery drills"),
        ("feature", "database-outage"),
        ("story", "db-kill-restart"),
        ("severity", "blocker"),
        ("tag", "nightly"),
        ("tag", "postgres"),
    } <= labels
    assert record.get("links", []) == []  # the source has a file path, no URL
    params = {p["name"]: p["value"] for p in record["parameters"]}
    assert params["objective RTO (s)"] == "1.0" and params["postgres_version"] == "'15.14'"
    assert "app_db_password" not in params
    assert all(p.get("excluded") for p in record["parameters"])
    names = [a["name"] for a in record["attachments"]]
    assert names == [
        "timeline",
        "objectives vs measured",
        "validation checklist",
        "lost and altered writes (3)",
        "scenario",
        "log tail: app",
        "log tail: primary",
        "PostgreSQL errors seen",
        "evidence: audit log copy",
        "evidence: fault output",
        "evidence: leaked",
    ]
    by_name = {a["name"]: out / a["source"] for a in record["attachments"]}
    assert_not_blank(by_name["timeline"].read_bytes())
    csv_text = by_name["lost and altered writes (3)"].read_text()
    assert csv_text.splitlines()[0] == (
        "kind,key,payload_hash,t_ack_relative_to_fault_s,ack_wall_utc"
    )
    assert len(csv_text.splitlines()) == 4 and ",-0.008," in csv_text
    steps = {s["name"]: s for s in record["steps"]}
    failed = steps["recovery 2/2: Verify application health — 0.50 s — FAILED"]
    (error,) = [a for a in failed["attachments"] if a["name"] == "error"]
    assert (out / error["source"]).read_text() == "HTTP 503 from /health"
    checklist = steps["validation checklist — 9/9 passed — ok"]
    assert len(checklist["steps"]) == 9
    assert "verdict — FAILED" in steps
    # redaction reached every attachment
    from drillkit.reporting.evidence import scan_for_secrets

    assert scan_for_secrets(out, [SECRET]) == []


def test_severity_mapping_and_runbook_link() -> None:
    import allure

    from drillkit.reporting.allure_report import SEVERITY, runbook_link

    assert SEVERITY == {
        "P0": allure.severity_level.BLOCKER,
        "P1": allure.severity_level.CRITICAL,
        "P2": allure.severity_level.NORMAL,
        "P3": allure.severity_level.MINOR,
    }
    src = {"runbook": "000", "section": "Procedure 1", "file": "seeds/000_x.txt"}
    assert runbook_link(src) is None  # a bare file path is no URL a reader can open
    assert runbook_link(src, "https://git.example/runbooks/") == (
        "https://git.example/runbooks/seeds/000_x.txt",
        "runbook 000: Procedure 1",
    )
    assert runbook_link({"runbook": "001"}) is None


def test_write_environment_executor_and_categories(tmp_path: Path) -> None:
    import re

    from drillkit.reporting.allure_report import (
        write_categories,
        write_environment,
        write_executor,
    )

    env = {
        "postgres_version": "15.14",
        "docker version": "20.10",
        "jwt_secret": "s3cr3t",
        "app_db_password": "pw",
        "note": "a=b:c\nnext",
        "city": "Zürich",
    }
    path = write_environment(tmp_path, env)
    assert path.read_text() == (
        "city=Z\\u00fcrich\ndocker\\ version=20.10\nnote=a\\=b\\:c\\nnext\npostgres_version=15.14\n"
    )
    executor = json.loads(write_executor(tmp_path, {"buildName": "nightly #42"}).read_text())
    assert executor == {"name": "drillkit", "type": "drillkit", "buildName": "nightly #42"}
    categories = json.loads(write_categories(tmp_path).read_text())
    assert [c["name"] for c in categories] == [
        "RTO breach",
        "RPO breach",
        "Missed detection",
        "Checklist failure",
        "Recovery step failed",
        "Sabotaged drill not caught",
        "Environment broken",
    ]
    assert categories[-1] == {"name": "Environment broken", "matchedStatuses": ["broken"]}

    def category(message: str) -> str | None:
        """First match, as Allure does: Java's String.matches is a full match."""
        for c in categories:
            regex = c.get("messageRegex")
            if regex is None or re.fullmatch(regex, message):
                return c["name"]
        return None

    assert category("AssertionError: RTO 40.0 s > objective 30.0 s\n") == "RTO breach"
    assert category("Failed: RPO 2.00 s > objective 0.00 s (3 lost)\n") == "RPO breach"
    assert category("AssertionError: checklist: journeys (timeout)\n") == "Checklist failure"
    assert category("StepFailed: step restart: timed out\n") == "Recovery step failed"
    assert category("AssertionError: d: MTTD 9.00 s > objective 5.00 s\n") == "Missed detection"
    assert category("AssertionError: RTO: never recovered (objective 30.0 s)\n") == "RTO breach"


# ---- redaction --------------------------------------------------------------------------------


@given(
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    secrets=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3),
)
def test_redact_text_leaves_no_secret(before: str, after: str, secrets: list[str]) -> None:
    from drillkit.reporting import redact_text

    text = before + "".join(secrets) + after
    assert not any(s in redact_text(text, secrets) for s in secrets)


def test_redact_result_reaches_every_string() -> None:
    from drillkit.reporting import redact_result

    result = make_result(secret=SECRET)
    clean = redact_result(result, [SECRET])
    assert SECRET not in json.dumps(clean.to_json())
    assert clean.environment["app_db_password"] == "[redacted]"
    assert clean.measurement == result.measurement and clean.samples == result.samples
    assert redact_result(result, []) is result


def test_a_repeated_scenario_gets_its_own_files(tmp_path: Path) -> None:
    from drillkit.reporting.evidence import build_pack, verify_pack

    first = make_result()
    rerun = dataclasses.replace(make_result(rto_objective=1.0), status="failed")
    out = build_pack([first, rerun], tmp_path / "p", "op", "r1", {}, pdf=False)
    assert (out / "timeline-db-kill-restart-2.png").is_file()
    assert DrillResult.load(out / "drill-db-kill-restart-2.json").status == "failed"
    page = (out / "index.html").read_text()
    assert 'id="drill-db-kill-restart"' in page and 'id="drill-db-kill-restart-2"' in page
    assert verify_pack(out) == []
