"""What CI sees: exit codes, JUnit properties, `drillkit finish` on a results folder, the webhook
(received by a real HTTP server on 127.0.0.1) and the CI templates under examples/ci/."""

from __future__ import annotations

import json
import re
import shlex
import socket
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

import drillkit.options
import drillkit.plugin
import drillkit.reporting.allure_report
import drillkit.reporting.evidence
from drillkit import cli
from drillkit.core.results import DrillResult
from drillkit.reporting import ci, notify
from drillkit.reporting.history import load_history

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))
from test_reporting import make_error_result, make_result  # noqa: E402

pytest_plugins = ["pytester"]
SECRET = "s3cr3t-token-4711"


# --- a webhook receiver on 127.0.0.1 ------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST (path, headers, JSON body)."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        received = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(
                    {
                        "path": self.path,
                        "type": self.headers["Content-Type"],
                        "json": json.loads(body),
                    }
                )
                self.send_response(200 if "fail" not in self.path else 500)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/services/T000/B000/" + SECRET) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_webhook_posts_slack_json_and_redacts(receiver: Receiver) -> None:
    failed = make_result(lost=3, rpo_objective=0.0)
    assert failed.status == "failed"
    text = ci.breach_message([failed, make_result(lost=0)], "run-1")
    assert text is not None
    notify.post(receiver.url(), text + f" leaked {SECRET}", redact=[SECRET])
    (post,) = receiver.posts
    assert post["type"] == "application/json"
    assert set(post["json"]) == {"text"}
    body = post["json"]["text"]
    assert body.startswith("drillkit run-1: 1 drill breached (of 2 run)")
    assert "db-kill-restart: FAILED: RPO" in body
    assert "[RTO 2.13 s (objective 30.0 s), RPO 0.04 s" in body
    assert SECRET not in body and "[redacted]" in body


def test_webhook_errors_name_only_scheme_and_host(receiver: Receiver) -> None:
    with pytest.raises(OSError) as exc:
        notify.post(receiver.url("/fail/" + SECRET), "x")
    assert "HTTP 500" in str(exc.value) and SECRET not in str(exc.value)
    with pytest.raises(Exception) as bad:
        notify.post("file:///etc/passwd", "x")
    assert "http:// or https://" in str(bad.value)


def test_webhook_times_out_on_a_receiver_that_never_answers() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection in the kernel, never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/hook/{SECRET}"
        with pytest.raises(OSError) as exc:
            notify.post(url, "x", timeout_s=0.3)
        assert "unreachable" in str(exc.value) and SECRET not in str(exc.value)
    finally:
        listener.close()


def test_no_message_when_all_passed_and_overdue_message() -> None:
    assert ci.breach_message([make_result(lost=0)]) is None
    broken = ci.breach_message([make_error_result()])
    assert broken is not None and "1 broken by the environment" in broken
    assert "loop device unavailable" in broken
    assert ci.overdue_message([], 92) is None
    text = ci.overdue_message([("disk-full", "never passed")], 92)
    assert text == "drillkit: 1 drill overdue (no pass within 92 days)\n• disk-full: never passed"


# --- exit codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("breaches", "broken", "other", "pytest_status", "want"),
    [
        (0, 0, 0, 0, 0),
        (1, 0, 0, 1, 1),
        (1, 2, 0, 1, 1),  # a breach wins over a broken environment
        (0, 2, 0, 1, 3),
        (0, 1, 1, 1, 1),  # another test failed too
        (0, 0, 0, 4, 4),  # usage error stands
        (0, 0, 0, 2, 2),  # interrupted stands
        (0, 0, 0, 5, 5),
    ],
)
def test_session_exit_code(
    breaches: int, broken: int, other: int, pytest_status: int, want: int
) -> None:
    assert ci.session_exit_code(breaches, broken, other, pytest_status) == want


def test_junit_properties_carry_the_figures() -> None:
    props = dict(ci.junit_properties(make_result(lost=3, rpo_objective=0.0)))
    assert props["drill.rto_s"] == "2.130"
    assert props["drill.rto_objective_s"] == "30.000"
    assert props["drill.lost_writes"] == "3"
    assert props["drill.checklist_total"] == "9"
    assert props["drill.status"] == "failed"
    assert props["drill.breach"].startswith("RPO")
    err = dict(ci.junit_properties(make_error_result()))
    assert err["drill.rto_s"] == "" and err["drill.error"].startswith("EnvironmentBroken")


class FakeRunner:
    """Stands in for the container runner inside the plugin: returns a finished record (from
    test_reporting.make_result) whose outcome the test chooses; everything after the drill (the
    plugin's JUnit properties, exit code, webhook, roles) is the real code."""

    outcome = "passed"

    def __init__(self, scenario: Any, config: Any, bus: Any) -> None:
        self.scenario = scenario
        self.secret_values = [SECRET]

    def run(self) -> DrillResult:
        if self.outcome == "error":
            result = make_error_result()
        else:
            result = make_result(lost=3 if self.outcome == "failed" else 0, rpo_objective=0.0)
        result.scenario_id = self.scenario.id
        if self.outcome == "failed":
            result.breaches = [f"RPO 4.00 s > objective 0 s (3 lost); token {SECRET}"]
        return result


DRILL_TEST = """
from drillkit.plugin import assert_verdict

def test_drill(drill_scenario, drill_result):
    assert_verdict(drill_result, drill_scenario)
"""


def _run_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, outcome: str, *args: str
) -> tuple[int, ET.Element | None]:
    monkeypatch.setattr(drillkit.plugin, "Runner", FakeRunner)
    monkeypatch.setattr(FakeRunner, "outcome", outcome)
    monkeypatch.delenv("DRILLKIT_SESSION", raising=False)
    pytester.makepyfile(test_drills=DRILL_TEST)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_inprocess(
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        f"--drill-scenarios={ROOT / 'scenarios' / 'db-kill-restart.yaml'}",
        f"--drill-results={pytester.path / 'reports'}",
        *args,
    )
    return int(result.ret), (ET.parse(junit).getroot() if junit.exists() else None)


def _props(root: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in root.iter("property")}


def test_suite_passed_exits_0_with_properties(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, root = _run_suite(pytester, monkeypatch, "passed", "--drill-approver=Dana Auditor")
    assert code == 0
    assert root is not None
    props = _props(root)
    assert props["drill.scenario"] == "db-kill-restart"
    assert props["drill.rto_s"] == "2.130" and props["drill.lost_writes"] == "0"
    assert props["drill.checklist_passed"] == props["drill.checklist_total"] == "9"
    (roles_file,) = (pytester.path / "reports" / "runs").glob("*/roles.yaml")
    roles = yaml.safe_load(roles_file.read_text())
    assert roles["approver"] == "Dana Auditor" and roles["executor"]


def test_breach_exits_1_with_message_and_notifies(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    code, root = _run_suite(pytester, monkeypatch, "failed", f"--drill-webhook={receiver.url()}")
    assert code == ci.EXIT_BREACH
    assert root is not None
    (failure,) = root.iter("failure")
    assert "RPO 4.00 s > objective 0 s" in failure.get("message", "")
    props = _props(root)
    assert props["drill.breach"].startswith("RPO 4.00 s")
    assert SECRET not in ET.tostring(root, encoding="unicode").split("<failure")[0]
    (post,) = receiver.posts
    assert "db-kill-restart: FAILED: RPO 4.00 s" in post["json"]["text"]
    assert SECRET not in json.dumps(post["json"])  # redacted by the plugin (the URL has it)


def test_broken_environment_exits_3(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, root = _run_suite(pytester, monkeypatch, "error")
    assert code == ci.EXIT_ENVIRONMENT
    assert root is not None
    (error,) = root.iter("error")
    assert "loop device unavailable" in error.get("message", "")


def test_bad_input_exits_4(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = pytester.path / "broken.yaml"
    bad.write_text("id: broken\ntitle: [unclosed\n")
    code, _ = _run_suite(pytester, monkeypatch, "passed", f"--drill-scenarios={bad}")
    assert code == ci.EXIT_BAD_INPUT


# --- drillkit finish ----------------------------------------------------------------------------


def test_finish_without_records_fails_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs" / "s1").mkdir(parents=True)
    assert cli.main(["finish", "--results", str(tmp_path), "--session", "s1"]) == 4
    err = capsys.readouterr().err
    assert f"no drill record in {tmp_path / 'runs' / 's1'}" in err


def test_finish_without_session_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DRILLKIT_SESSION", raising=False)
    assert cli.main(["finish", "--drill-results", str(tmp_path)]) == 4
    assert "no session given" in capsys.readouterr().err


def test_finish_reads_the_given_folder_prints_and_records_the_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], receiver: Receiver
) -> None:
    session = tmp_path / "runs" / "s2"
    make_result(lost=0).save(session / "db-kill-restart.json")
    failed = make_result(scenario_id="disk-full", lost=3, rpo_objective=0.0)
    failed.save(session / "disk-full.json")
    code = cli.main(
        [
            "finish",
            "--results",
            str(tmp_path),
            "--session",
            "s2",
            "--no-pdf",
            "--webhook",
            receiver.url(),
            "--scenarios",
            str(ROOT / "scenarios"),
            "--verifier",
            "Vera Verifier",
        ]
    )
    assert code == ci.EXIT_BREACH
    out = capsys.readouterr().out
    digest = re.search(r"pack hash: sha256:([0-9a-f]{64})", out)
    assert digest is not None
    (row,) = load_history(tmp_path / "history" / "packs.jsonl")
    assert row["pack_hash"] == f"sha256:{digest.group(1)}"
    assert row["drills"] == {"db-kill-restart": "passed", "disk-full": "failed"}
    assert len(load_history(tmp_path / "history" / "drills.jsonl")) == 2
    pack = tmp_path / "evidence" / "s2"
    assert "Vera Verifier" in (pack / "index.html").read_text()
    board = (tmp_path / "dashboard.html").read_text()
    assert '<tr id="drill-disk-full">' in board and ">FAILED<" in board
    args = ["verify-pack", str(pack), "--expected-hash", f"sha256:{digest.group(1)}"]
    assert cli.main(args) == 0
    assert cli.main(["verify-pack", str(pack), "--expected-hash", "0" * 64]) == 1
    (post,) = receiver.posts
    text = post["json"]["text"]
    assert "disk-full: FAILED" in text
    assert "overdue" in text  # the repo's other scenarios never passed in this history


# --- CI templates -------------------------------------------------------------------------------

TEMPLATES = sorted((ROOT / "examples" / "ci").glob("*.yml"))


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.MULTILINE))


def _cli_commands() -> set[str]:
    parser_text = Path(cli.__file__).read_text()
    return set(re.findall(r'sub\.add_parser\(\s*"([\w-]+)"', parser_text))


def _scripts(node: Any) -> Iterator[str]:
    """Every shell line of a template: GitHub `run:` blocks, GitLab script sections."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("run", "script", "before_script", "after_script"):
                lines = value if isinstance(value, list) else str(value).splitlines()
                yield from (str(line) for line in lines)
            else:
                yield from _scripts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _scripts(item)


def test_there_are_github_and_gitlab_templates() -> None:
    assert {p.name for p in TEMPLATES} == {"github-actions.yml", "gitlab-ci.yml"}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_ci_template_parses_and_calls_only_what_exists(template: Path) -> None:
    data = yaml.safe_load(template.read_text())
    assert isinstance(data, dict)
    lines = list(_scripts(data))
    assert lines
    targets, commands = _make_targets(), _cli_commands()
    made, called = set(), set()
    for line in lines:
        for match in re.finditer(r"\bmake\s+(\S+)", line):
            (word,) = shlex.split(match.group(1))
            if not word.startswith("$"):  # "$SUITE": its values are checked below
                made.add(word)
        for match in re.finditer(r"\bdrillkit(?:\.cli)?\s+([\w-]+)", line):
            called.add(match.group(1))
        for match in re.finditer(r"--drill-([\w-]+)", line):
            assert match.group(1) in {o[0] for o in drillkit.options.OPTIONS}, line
    assert made and made <= targets, made - targets
    assert called and called <= commands, called - commands
    text = template.read_text()
    for artifact in ("reports/allure-report", "reports/evidence", "reports/junit.xml"):
        assert artifact in text
    if template.name == "github-actions.yml":
        assert data[True]["schedule"][0]["cron"]  # PyYAML reads the key `on` as True
        assert data[True]["workflow_dispatch"]["inputs"]["suite"]["default"] in targets
    else:
        assert data["variables"]["SUITE"] in targets
        assert '$CI_PIPELINE_SOURCE == "schedule"' in text


def test_finish_options_used_by_templates_exist() -> None:
    for template in TEMPLATES:
        for line in _scripts(yaml.safe_load(template.read_text())):
            if "drillkit finish" not in line:
                continue
            for flag in re.findall(r"(--[\w-]+)", line.split("drillkit finish", 1)[1]):
                with pytest.raises(SystemExit) as exc:
                    cli.main(["finish", flag, "x", "--help"])
                assert exc.value.code == 0, flag
