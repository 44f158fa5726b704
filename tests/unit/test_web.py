"""Pure logic of the website defacement drill (drillkit/stack/services/web.py, drillkit/catalog/web.py): manifests,
comparisons, partial-restore archives, served-page checks, nginx log scanning, the "site" probe
plumbing, and the shape of the drill and its sabotaged twin. No containers."""

import io
import tarfile
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drillkit.catalog.web import nginx_errors, served_problems
from drillkit.core.probes import ProbeConfig, ProbeError, Probes
from drillkit.core.registry import CHECKS, FAULTS, RECOVERY
from drillkit.core.scenario import load_scenario, parse_scenario_text
from drillkit.stack.services.web import (
    ManifestDiff,
    compare,
    format_sha256sum,
    manifest_from_tar,
    parse_sha256sum,
    select_tar,
    served_paths,
    sha256,
)
from drillkit.validate import ValidationError

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "images" / "web" / "site"
FILES = {
    "index.html": b"<h1>home</h1>\n",
    "about.html": b"<h1>about</h1>\n",
    "css/style.css": b"body{}\n",
    "js/app.js": b"console.log('ok');\n",
}


def make_tar(files: dict[str, bytes], top: str = "site") -> bytes:
    """A tar shaped like Docker's get_archive of a directory: the directory's own entry first."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = {top} | {f"{top}/{Path(p).parent.as_posix()}" for p in files if "/" in p}
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, data in files.items():
            info = tarfile.TarInfo(f"{top}/{path}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_manifest_from_tar_strips_the_directory_name():
    manifest = manifest_from_tar(make_tar(FILES))
    assert manifest == {p: sha256(d) for p, d in FILES.items()}


def test_manifest_refuses_paths_that_climb_out():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("site/../../etc/passwd")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ValueError, match="unsafe"):
        manifest_from_tar(buf.getvalue())


def test_sha256sum_format_round_trips_and_parses_real_output():
    manifest = manifest_from_tar(make_tar(FILES))
    assert parse_sha256sum(format_sha256sum(manifest)) == manifest
    real = (
        f"{'a' * 64}  ./index.html\n{'b' * 64}  ./js/app.js\n{'c' * 64} *binary.bin\n"
        f"\\{'d' * 64}  ./odd\\nname\n"
    )
    assert parse_sha256sum(real) == {
        "index.html": "a" * 64,
        "js/app.js": "b" * 64,
        "binary.bin": "c" * 64,
        "odd\\nname": "d" * 64,  # an escaped name never matches a manifest entry
    }


@pytest.mark.parametrize("line", ["not a line", "abc  ./x", f"{'g' * 64}  ./x"])
def test_parse_sha256sum_rejects_junk(line):
    with pytest.raises(ValueError, match="sha256sum"):
        parse_sha256sum(line)


def test_compare_names_modified_missing_and_added():
    good = {"index.html": "1", "js/app.js": "2", "about.html": "3"}
    now = {"index.html": "X", "js/app.js": "2", "backdoor.php": "9"}
    diff = compare(good, now)
    assert diff == ManifestDiff(
        modified=("index.html",), missing=("about.html",), added=("backdoor.php",)
    )
    assert not diff.clean
    assert diff.files == ("about.html", "backdoor.php", "index.html")
    assert diff.describe() == "modified: index.html; missing: about.html; added: backdoor.php"
    assert compare(good, dict(good)).clean


@given(
    st.dictionaries(st.text("abc/._", min_size=1, max_size=8), st.text("0123456789abcdef")),
    st.data(),
)
def test_compare_finds_every_change(good, data):
    now = dict(good)
    changed = data.draw(st.sets(st.sampled_from(sorted(good))) if good else st.just(set()))
    for path in changed:
        now[path] = now[path] + "!"
    diff = compare(good, now)
    assert set(diff.modified) == changed
    assert diff.clean == (not changed)


def test_served_paths_maps_directory_urls_to_index_files():
    assert served_paths({"index.html": "h", "docs/index.html": "d", "js/app.js": "j"}) == {
        "/index.html": "index.html",
        "/docs/index.html": "docs/index.html",
        "/js/app.js": "js/app.js",
        "/": "index.html",
        "/docs/": "docs/index.html",
    }


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [m.name for m in tar.getmembers()]


def test_select_tar_partial_keeps_only_the_named_files_and_their_directories():
    data, taken = select_tar(make_tar(FILES), ["js/app.js"])
    assert taken == ["js/app.js"]
    assert tar_names(data) == ["site", "site/js", "site/js/app.js"]
    assert manifest_from_tar(data) == {"js/app.js": sha256(FILES["js/app.js"])}


def test_select_tar_everything():
    data, taken = select_tar(make_tar(FILES), None)
    assert sorted(taken) == sorted(FILES)
    assert manifest_from_tar(data) == manifest_from_tar(make_tar(FILES))


def test_select_tar_unknown_file_is_named():
    with pytest.raises(KeyError, match=r"not in the backup: js/evil\.js"):
        select_tar(make_tar(FILES), ["index.html", "js/evil.js"])


class FakeResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code, self.content = status, body


class FakeSession:
    """Serves `pages` (URL path -> (status, body)); records the URLs asked for."""

    def __init__(self, pages: dict[str, tuple[int, bytes]]) -> None:
        self.pages, self.asked = pages, []

    def get(self, url: str, timeout: float) -> FakeResponse:
        path = url.removeprefix("http://front")
        self.asked.append(path)
        return FakeResponse(*self.pages.get(path, (404, b"")))


def good_pages() -> dict[str, tuple[int, bytes]]:
    pages = {"/" + p: (200, d) for p, d in FILES.items()}
    pages["/"] = pages["/index.html"]
    return pages


def test_served_problems_clean_site():
    manifest = manifest_from_tar(make_tar(FILES))
    session = FakeSession(good_pages())
    assert served_problems("http://front", manifest, session=session) == []
    assert sorted(session.asked) == sorted(served_paths(manifest))


def test_served_problems_names_injected_script_and_maintenance_page():
    manifest = manifest_from_tar(make_tar(FILES))
    pages = good_pages()
    pages["/js/app.js"] = (200, FILES["js/app.js"] + b";evil()")
    pages["/about.html"] = (503, b"maintenance")
    problems = served_problems("http://front", manifest, session=FakeSession(pages))
    assert len(problems) == 2
    assert any(p.startswith("/js/app.js serves bytes that are not js/app.js's") for p in problems)
    assert "/about.html answered 503" in problems


def test_served_problems_restricted_to_paths_and_unknown_path():
    manifest = manifest_from_tar(make_tar(FILES))
    pages = good_pages()
    pages["/js/app.js"] = (200, b"tampered")
    session = FakeSession(pages)
    assert served_problems("http://front", manifest, ["/"], session=session) == []
    assert session.asked == ["/"]
    assert served_problems("http://front", manifest, ["/nope.html"], session=session) == [
        "/nope.html: not a page of the known-good site"
    ]


def test_nginx_errors_finds_5xx_and_error_levels_only():
    log = "\n".join(
        [
            '172.27.0.1 - - [24/Nov/2026:15:00:28 +0000] "GET / HTTP/1.1" 200 609 "-" "python"',
            '172.27.0.1 - - [24/Nov/2026:15:00:29 +0000] "GET / HTTP/1.1" 503 190 "-" "python"',
            '172.27.0.1 - - [24/Nov/2026:15:00:29 +0000] "GET /x HTTP/1.1" 404 153 "-" "python"',
            '172.27.0.1 - - [24/Nov/2026:15:00:29 +0000] "GET /500 HTTP/1.1" 200 1 "-" "python"',
            "2026/11/24 15:00:30 [error] 7#7: *3 connect() failed (111: Connection refused)",
            "2026/11/24 15:00:30 [notice] 1#1: signal process started",
        ]
    )
    bad = nginx_errors(log)
    assert len(bad) == 2
    assert '" 503 ' in bad[0] and "[error]" in bad[1]


def test_extra_probe_records_pass_and_failure():
    probes = Probes(
        lambda: "http://127.0.0.1:9",
        "/health",
        ProbeConfig(),
        run_tag="t",
        extra={"site": lambda: None},
    )

    def defaced() -> None:
        raise ProbeError("1 of 5 requests wrong: /js/app.js serves bytes that are not ...")

    probes._extra("site", lambda: None)
    probes._extra("site", defaced)
    samples = probes.snapshot()
    assert [(s.probe, s.ok) for s in samples] == [("site", True), ("site", False)]
    assert samples[1].error is not None and "js/app.js" in samples[1].error
    assert samples[1].t <= time.monotonic()


def test_shipped_site_has_the_files_the_drill_defaces():
    files = {p.relative_to(SITE).as_posix() for p in SITE.rglob("*") if p.is_file()}
    assert {"index.html", "js/app.js"} <= files
    assert "/js/app.js" in (SITE / "index.html").read_text()  # the home page loads the script


def test_actions_and_checks_registered_with_typed_params():
    assert "deface-site" in FAULTS.entries
    for name in (
        "site-maintenance",
        "check-site-integrity",
        "restore-site-content",
        "verify-site-files",
        "verify-site-served",
    ):
        assert name in RECOVERY.entries
    assert {"site-integrity", "site-no-error-spike"} <= set(CHECKS.entries)
    restore = RECOVERY.get("restore-site-content").params
    assert restore["files"].type_name == "list of strings" and not restore["files"].required
    assert RECOVERY.get("site-maintenance").params["enabled"].required


def test_drill_and_sabotaged_twin():
    drill = load_scenario(ROOT / "scenarios" / "website-defacement.yaml")
    twin = load_scenario(
        ROOT / "scenarios" / "sabotage" / "website-defacement-partial-restore.yaml"
    )
    assert drill.stack == {"web": True} and twin.stack == {"web": True}
    assert drill.expect == {"outcome": "pass"}
    assert twin.expect == {"outcome": "fail", "breach": "checklist"}
    assert {"nightly", "quarterly"} <= set(drill.tags)
    assert drill.source["runbook"] == "002" and "Website Defacement" in drill.source["section"]
    assert any(c.id == "site-integrity" for c in drill.checklist)
    assert any(c.id == "site-integrity" for c in twin.checklist)
    full = [s for s in drill.recovery if s.action == "restore-site-content"]
    partial = [s for s in twin.recovery if s.action == "restore-site-content"]
    assert full and "files" not in full[0].params
    assert partial and partial[0].params["files"] == ["index.html"]
    # the correct runbook verifies before it leaves maintenance, and the public site after
    actions = [s.action for s in drill.recovery]
    off = max(i for i, s in enumerate(drill.recovery) if s.action == "site-maintenance")
    assert "verify-site-files" in actions[:off] and actions[-1] == "verify-site-served"


def test_stack_web_option_is_validated():
    text = (ROOT / "scenarios" / "website-defacement.yaml").read_text()
    assert parse_scenario_text(text).stack == {"web": True}
    with pytest.raises(ValidationError, match=r"stack\.web: expected true or false"):
        parse_scenario_text(text.replace("stack: {web: true}", "stack: {web: 1}"))
    # without the option the stack has no 'web' service for a step to name
    steps = "  - {action: restart-service, with: {service: web}}\n"
    with pytest.raises(ValidationError, match="unknown service 'web'"):
        parse_scenario_text(
            text.replace("stack: {web: true}\n", "").replace("recovery:\n", "recovery:\n" + steps)
        )
