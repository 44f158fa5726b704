"""The built wheel works in a project that is not drillkit's checkout (issue 14, part 1).

Builds the wheel from a copy of this checkout, creates a new virtualenv in a temporary folder
outside the repository, installs the wheel there, scaffolds a team project with `drillkit init`,
validates it with `drillkit validate` and runs ONE scaffolded drill (db-kill-restart) with pytest
from that project. An audit hook (a .pth file in the new venv) records every file or folder the
venv's Python processes open or list under this checkout or the shared venv: there must be none.

Time (~45 s): ~10 s to build the wheel, ~10 s to create the venv and install from local wheels
(with the shared venv's pip: `pip --python VENV`), ~15-20 s for the drill. The dependency wheels
are built once (pip, from PyPI, pinned to the shared venv's versions) into a cache folder under
the system temp dir keyed by those versions (DRILLKIT_WHEELHOUSE overrides it); the first run
takes a minute or two longer.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CHECKOUT = Path(__file__).resolve().parents[2]
SHARED_VENV = Path(sys.prefix).resolve()
IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "reports",
    ".run",
    ".tools",
    "build",
    "*.egg-info",
    "__pycache__",
    ".hypothesis",
)

AUDIT_MODULE = '''
"""Test-only: record opens and listings under forbidden folders (DRILLKIT_TEST_FORBIDDEN)."""
import os
import sys

_roots = [r for r in os.environ.get("DRILLKIT_TEST_FORBIDDEN", "").split(os.pathsep) if r]
_log = os.environ.get("DRILLKIT_TEST_READS")
_busy = []


def _hook(event, args):
    if _busy or event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        return  # a file descriptor
    full = os.path.abspath(path)
    if any(full == r or full.startswith(r + os.sep) for r in _roots):
        _busy.append(1)
        try:
            with open(_log, "a") as out:
                out.write(f"{os.getpid()} {event} {full}\\n")
        finally:
            _busy.clear()


if _roots and _log:
    sys.addaudithook(_hook)
'''


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600):
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def build_wheel(out: Path) -> Path:
    """The wheel, built from a copy of the checkout (the build writes build/ and *.egg-info)."""
    src = out / "src"
    shutil.copytree(CHECKOUT, src, ignore=IGNORE)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)], out)
    (wheel,) = out.glob("drillkit-*.whl")
    return wheel


def wheelhouse(wheel: Path) -> Path:
    """drillkit's dependencies as wheels (sdists built), at the shared venv's versions; made once."""
    freeze = run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"], CHECKOUT
    ).stdout.splitlines()
    pins = sorted(line for line in freeze if "==" in line and not line.startswith("drillkit"))
    with zipfile.ZipFile(wheel) as whl:  # what the wheel asks for is part of the key too
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        wants = sorted(
            line
            for line in whl.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist")
        )
    key = hashlib.sha256("\n".join(pins + wants).encode()).hexdigest()[:12]
    base = Path(os.environ.get("DRILLKIT_WHEELHOUSE") or Path(tempfile.gettempdir()))
    house = base / f"drillkit-wheelhouse-{key}"
    if (house / ".complete").is_file():
        return house
    partial = Path(tempfile.mkdtemp(prefix="drillkit-wheelhouse-", dir=base))
    (partial / "constraints.txt").write_text("\n".join(pins) + "\n")
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "-w",
            str(partial),
            "-c",
            str(partial / "constraints.txt"),
            str(wheel),
        ],
        partial,
    )
    for own in partial.glob("drillkit-*.whl"):
        own.unlink()
    (partial / ".complete").touch()
    try:
        partial.rename(house)
    except OSError:  # another run made it first
        shutil.rmtree(partial, ignore_errors=True)
    return house


def drill_pytest(
    vpy: Path, project: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`pytest -v` in the team's project with the new venv's python; it must exit 0."""
    drill = subprocess.run(
        [str(vpy), "-m", "pytest", "-v", "-p", "no:randomly", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert drill.returncode == 0, drill.stdout[-4000:] + drill.stderr[-2000:]
    return drill


def test_wheel_in_a_new_venv_drills_a_scaffolded_project(tmp_path_factory):
    work = Path(tempfile.mkdtemp(prefix="drillkit-wheel-"))  # outside the repository
    assert not work.is_relative_to(CHECKOUT)
    try:
        _drill_from_the_wheel(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _drill_from_the_wheel(work: Path) -> None:
    wheel = build_wheel(work / "dist")
    house = wheelhouse(wheel)
    venv = work / "venv"
    # a venv without its own pip (ensurepip costs seconds): the shared venv's pip installs into it
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    vpy = venv / "bin" / "python"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(vpy),
            "install",
            "-q",
            "--no-compile",
            "--no-index",
            "--find-links",
            str(house),
            str(wheel),
        ],
        work,
    )
    site = Path(
        run(
            [str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work
        ).stdout.strip()
    )
    (site / "_drillkit_read_audit.py").write_text(AUDIT_MODULE)
    (site / "_drillkit_read_audit.pth").write_text("import _drillkit_read_audit\n")
    reads = work / "reads.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST", "DRILLKIT"))
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        DRILLKIT_TEST_FORBIDDEN=os.pathsep.join({str(CHECKOUT), str(SHARED_VENV)}),
        DRILLKIT_TEST_READS=str(reads),
        PYTHONDONTWRITEBYTECODE="1",
    )

    # the audit hook works: a read of the checkout from the new venv is caught (then forgotten)
    run([str(vpy), "-c", f"open({str(CHECKOUT / 'pyproject.toml')!r}).close()"], work, env)
    assert reads.read_text().split()[1:] == ["open", str(CHECKOUT / "pyproject.toml")]
    reads.unlink()

    # drillkit in the new venv is the wheel's, with its data in site-packages
    where = json.loads(
        run(
            [
                str(vpy),
                "-c",
                "import json, drillkit, drillkit.paths as p; print(json.dumps({'pkg': "
                "drillkit.__file__, 'checkout': str(p.CHECKOUT), 'data': str(p.DATA_DIR), "
                "'stack': str(p.REFERENCE_STACK), 'images': str(p.IMAGES_DIR), "
                "'scenarios': str(p.SCENARIOS_DIR)}))",
            ],
            work,
            env,
        ).stdout
    )
    assert where["checkout"] == "None", where
    for key in ("pkg", "data", "stack", "images", "scenarios"):
        assert Path(where[key]).is_relative_to(site), (key, where)

    project = work / "team"
    project.mkdir()
    run([str(venv / "bin" / "drillkit"), "init"], project, env)
    for name in ("pytest.ini", "drills/test_drills.py", "stacks/team.yaml", "drillkit.mk"):
        assert (project / name).is_file(), name
    git = ["git", "-c", "user.name=drill", "-c", "user.email=drill@localhost"]
    run([*git, "init", "-q"], project, env)
    run([*git, "add", "-A"], project, env)
    run([*git, "commit", "-q", "-m", "scaffold"], project, env)
    commit = run(["git", "rev-parse", "--short", "HEAD"], project, env).stdout.strip()

    checked = run([str(venv / "bin" / "drillkit"), "validate"], project, env)
    assert "5 scenario files, 0 problems" in checked.stderr

    env["DRILLKIT_SESSION"] = "wheel-test"
    drill = drill_pytest(vpy, project, env, "--drill-select", "db-kill-restart")
    assert "test_drill[db-kill-restart] PASSED" in drill.stdout

    record = json.loads((project / "reports/runs/wheel-test/db-kill-restart.json").read_text())
    assert record["status"] == "passed"
    assert record["environment"]["git_commit"] == commit  # the team project's commit
    # the images are the ones the checkout builds: the content hash is the same from the wheel
    from drillkit.stack import images

    base = images._local(images.base_image()) or images.base_image()
    for name in ("postgres", "app"):
        want = f"drillkit/{name}:{images.context_hash(images.IMAGES_DIR / name, base)}"
        assert record["environment"][f"image_{name}"] == want
    assert (project / ".run").is_dir()  # the run dir is the project's, not site-packages'
    assert not (site / "reports").exists() and not (site / ".run").exists()

    _drill_a_compose_project(work, venv, env)

    seen = reads.read_text().splitlines() if reads.exists() else []
    assert seen == [], "files of the checkout or the shared venv were read:\n" + "\n".join(
        seen[:20]
    )


SHOP_FILES = ("compose.yaml", "api.env", "db.env", "app", "db", "cache", "sql")
"""What the shop team has before drillkit: its compose file, env files and build contexts
(examples/shop without drillkit's overlay, scenarios and pytest files)."""


def _drill_a_compose_project(work: Path, venv: Path, env: dict[str, str]) -> None:
    """`drillkit init --compose` on a team's compose file, the guessed overlay corrected as the
    README's walkthrough says (the health answer, the app's role), then the scaffolded drills run
    from the wheel and pass."""
    team = work / "shop"
    team.mkdir()
    for name in SHOP_FILES:
        src = CHECKOUT / "examples" / "shop" / name
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, team / name)
    drillkit = str(venv / "bin" / "drillkit")
    run([drillkit, "init", "--compose", "compose.yaml", "--name", "shop"], team, env)
    stack_file = team / "stacks" / "shop.yaml"
    text = stack_file.read_text()
    assert "service: db" in text and "env: POSTGRES_PASSWORD" in text, text
    # step 3 of the walkthrough: the api answers plain-text OK on /healthz and logs in as `shop`
    text = text.replace("path: /\n", "path: /healthz\n").replace("role: shopadmin", "role: shop")
    stack_file.write_text(text)
    for scenario in (team / "scenarios").glob("*.yaml"):
        scenario.write_text(scenario.read_text().replace("shopadmin", "shop"))
    checked = run([drillkit, "validate", "--stack", str(stack_file)], team, env)
    assert "4 scenario files, 0 problems" in checked.stderr, checked.stderr
    env = {**env, "DRILLKIT_SESSION": "wheel-compose"}
    drill = drill_pytest(venv / "bin" / "python", team, env)
    for sid in ("db-kill-restart", "partition-app-db", "credential-leak", "disk-full"):
        assert f"test_drill[{sid}] PASSED" in drill.stdout, drill.stdout[-3000:]
        record = json.loads((team / f"reports/runs/wheel-compose/{sid}.json").read_text())
        assert record["status"] == "passed", sid
        assert record["environment"]["postgres_version"].startswith("15"), record["environment"]
