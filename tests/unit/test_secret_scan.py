"""Secrets stay secret (issue 16, class 5): the runs record digests, never the secrets; `drillkit
finish` scans every file under reports/ (a PDF's text included) and fails loudly on a leak; the
evidence pack is not world-readable; every record says plainly whether it is evidence."""

from __future__ import annotations

import stat
import sys
import zlib
from pathlib import Path

import pytest

from drillkit import cli
from drillkit.core import leaks
from drillkit.core.results import evidence_status
from drillkit.reporting import ci, leakscan
from drillkit.reporting.terminal import summary_lines
from drillkit.stack.secrets import Secrets

sys.path.insert(0, str(Path(__file__).parent))
from test_reporting import make_result

SECRET = Secrets.generate()
OTHER = Secrets.generate()


def test_the_digest_file_holds_no_secret_and_is_private(tmp_path: Path) -> None:
    assert leaks.record(tmp_path, [SECRET, OTHER, SECRET, "short"]) == 2
    path = tmp_path / leaks.DIGESTS_FILE
    text = path.read_text()
    assert SECRET not in text and OTHER not in text and "short" not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {d.length for d in leaks.load(tmp_path)} == {32}


@pytest.mark.parametrize(
    "template",
    [
        "{s}",
        'password="{s}"',
        '{{"app_db_password": "{s}"}}',
        "postgresql://app:{s}@primary/app",
        "prefix{s}suffix",  # inside a longer run of letters and digits
        "line one\n\t{s}\n",
    ],
)
def test_a_secret_is_found_wherever_it_is_written(tmp_path: Path, template: str) -> None:
    leaks.record(tmp_path, [SECRET])
    digests = leaks.load(tmp_path)
    assert len(list(leaks.find(template.format(s=SECRET).encode(), digests))) == 1
    assert list(leaks.find(template.format(s=OTHER).encode(), digests)) == []


def test_a_team_secret_with_punctuation_is_found(tmp_path: Path) -> None:
    team = "p@ss:w0rd!-long"
    leaks.record(tmp_path, [team])
    assert len(list(leaks.find(f"x={team}; y".encode(), leaks.load(tmp_path)))) == 1


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF whose page text is `text`, in a Flate-compressed content stream (the
    text is not in the file's bytes: only text extraction finds it)."""
    content = zlib.compress(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode())
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content)
        + content
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out, offsets = b"%PDF-1.4\n", []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objs) + 1,
        xref,
    )
    return out


def test_a_secret_in_a_pdfs_text_is_found(tmp_path: Path) -> None:
    leaks.record(tmp_path, [SECRET])
    pdf = tmp_path / "evidence.pdf"
    pdf.write_bytes(minimal_pdf(f"leaked: {SECRET}"))
    assert SECRET.encode() not in pdf.read_bytes()  # only the text extraction can see it
    assert leakscan.scan_file(pdf, leaks.load(tmp_path)) >= 1
    pdf.write_bytes(minimal_pdf(f"clean: {OTHER}"))
    assert leakscan.scan_file(pdf, leaks.load(tmp_path)) == 0


def finish(tmp_path: Path, session: str) -> int:
    return cli.main(["finish", "--results", str(tmp_path), "--session", session, "--no-pdf"])


def test_finish_fails_loudly_on_a_secret_in_any_file_under_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    session = tmp_path / "runs" / "s1"
    make_result(lost=0).save(session / "db-kill-restart.json")
    leaks.record(session, [SECRET])
    assert finish(tmp_path, "s1") == ci.EXIT_PASSED
    assert "none of the 1 secrets issued found" in capsys.readouterr().out
    (tmp_path / "allure-results").mkdir()
    (tmp_path / "allure-results" / "x-attachment.txt").write_text(f"conn pw={SECRET}\n")
    assert finish(tmp_path, "s1") == ci.EXIT_SECRET_LEAK
    err = capsys.readouterr().err
    assert "SECRET LEAK" in err and "x-attachment.txt" in err and SECRET not in err


def test_the_evidence_pack_is_not_world_readable(tmp_path: Path) -> None:
    session = tmp_path / "runs" / "s1"
    make_result(lost=0).save(session / "db-kill-restart.json")
    assert finish(tmp_path, "s1") == ci.EXIT_PASSED
    pack = tmp_path / "evidence" / "s1"
    assert stat.S_IMODE(pack.stat().st_mode) == 0o700
    files = list(pack.iterdir())
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o600}


def test_a_record_says_whether_it_is_evidence() -> None:
    r = make_result(lost=0)
    assert evidence_status(r) == "evidence"
    assert evidence_status(r, "checklist below the minimum") == (
        "not evidence: checklist below the minimum"
    )
    r.status = "aborted"
    assert evidence_status(r).startswith("not evidence: the drill did not reach its verdict")
    r.status, r.checks = "passed", []
    assert evidence_status(r) == "not evidence: no checklist item ran"
    r.evidence_status = evidence_status(r)
    assert "    not evidence: no checklist item ran" in summary_lines([r], Path("x"))


def test_the_pack_page_and_allure_show_the_evidence_status(tmp_path: Path) -> None:
    from drillkit.reporting.allure_report import parameters

    r = make_result(lost=0)
    r.evidence_status = "not evidence: no checklist item ran"
    assert parameters(r)["evidence"] == "not evidence: no checklist item ran"
    r.save(tmp_path / "runs" / "s1" / "x.json")
    assert finish(tmp_path, "s1") in (ci.EXIT_PASSED, ci.EXIT_BREACH)
    page = (tmp_path / "evidence" / "s1" / "index.html").read_text()
    assert "Counts as evidence" in page and "not evidence: no checklist item ran" in page


def test_the_scan_reads_only_what_changed_since_the_session_began(tmp_path: Path) -> None:
    """Files from earlier sessions (ctime before this one's start) cannot hold its secrets and
    are not read again; a file written since, even with an old mtime set, is."""
    import os
    import time

    leaks.record(tmp_path, [SECRET])
    digests = leaks.load(tmp_path)
    old = tmp_path / "runs" / "earlier" / "record.json"
    old.parent.mkdir(parents=True)
    old.write_text(f'{{"leak": "{SECRET}"}}')  # stands in for an earlier night's file
    since = time.time() + 0.05
    while time.time() < since + 0.02:  # past `since` by more than the kernel's coarse clock lags
        time.sleep(0.01)
    new = tmp_path / "allure-results" / "x-result.json"
    new.parent.mkdir()
    new.write_text(f"token {SECRET}")
    os.utime(new, (0, 0))  # an mtime from 1970: ctime still says it changed now
    found, skipped, older = leakscan.scan_tree(tmp_path, digests, since)
    assert found == [("allure-results/x-result.json", 1)] and skipped == [] and older == 1
    assert [rel for rel, _ in leakscan.scan_tree(tmp_path, digests)[0]] == [
        "allure-results/x-result.json",
        "runs/earlier/record.json",
    ]  # no session start: every file


def test_the_session_began_with_its_first_runs_start(tmp_path: Path) -> None:
    """Each digest line keeps its run's start; the scan reads from the earliest (less the clock
    margin); a line without one (an older drillkit's) means every file is read."""
    assert leaks.issued_since(tmp_path) is None  # nothing recorded
    leaks.record(tmp_path, [SECRET], issued_after=1796349928.5)
    leaks.record(tmp_path, [OTHER], issued_after=1796349900.25)
    assert leaks.issued_since(tmp_path) == 1796349900.25
    assert {d.sha256 for d in leaks.load(tmp_path)} == {
        leaks.digest(SECRET).sha256,  # type: ignore[union-attr]
        leaks.digest(OTHER).sha256,  # type: ignore[union-attr]
    }
    leaks.record(tmp_path, [Secrets.generate()])
    assert leaks.issued_since(tmp_path) is None


def test_finish_leaves_an_earlier_sessions_files_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    earlier = tmp_path / "evidence" / "earlier" / "index.html"
    earlier.parent.mkdir(parents=True)
    earlier.write_text(f"<p>{SECRET}</p>")  # an earlier night's file: cannot hold this session's
    session = tmp_path / "runs" / "s1"
    make_result(lost=0).save(session / "db-kill-restart.json")
    leaks.record(session, [SECRET], issued_after=time.time() + 2 * leakscan.CLOCK_MARGIN_S)
    assert finish(tmp_path, "s1") == ci.EXIT_PASSED
    assert "files unchanged since the session began: not read" in capsys.readouterr().out
