"""drillkit/paths.py: drillkit's own data (reference stack, built-in scenarios, image contexts) is
found in a checkout and in an installed package; the team's project is the working directory."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from drillkit import paths
from drillkit.core import runner
from drillkit.paths import (
    CHECKOUT,
    DATA_DIR,
    IMAGES_DIR,
    REFERENCE_STACK,
    SCENARIOS_DIR,
    STACKS_DIR,
    project_root,
    project_scenarios,
)
from drillkit.stack import images, spec

REPO = Path(__file__).resolve().parents[2]


def test_in_the_checkout_the_data_is_the_repositorys_top_level_folders() -> None:
    assert CHECKOUT == REPO and DATA_DIR == REPO
    assert REFERENCE_STACK == REPO / "stacks" / "reference.yaml" and REFERENCE_STACK.is_file()
    assert REFERENCE_STACK.parent == STACKS_DIR
    assert (SCENARIOS_DIR / "db-kill-restart.yaml").is_file()
    assert (SCENARIOS_DIR / "sabotage").is_dir()
    for name in ("postgres", "app", "toxiproxy", "web", "payments"):
        assert (IMAGES_DIR / name / "Dockerfile").is_file(), name


def test_modules_use_the_one_set_of_paths() -> None:
    assert images.IMAGES_DIR == IMAGES_DIR
    assert spec.REFERENCE == REFERENCE_STACK
    assert spec.load_stack(None).database.image  # the default stack file loads from its path


def test_the_project_is_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert project_root() == tmp_path.resolve()
    config = runner.RunConfig()
    assert config.results_dir.is_relative_to(tmp_path.resolve())
    assert config.run_root == tmp_path.resolve() / ".run"
    assert config.project_dir == tmp_path.resolve()
    # no scenarios/ of its own: the built-in ones; with one: the project's
    assert project_scenarios() == SCENARIOS_DIR
    (tmp_path / "scenarios").mkdir()
    assert project_scenarios() == tmp_path.resolve() / "scenarios"


def test_an_installed_package_finds_its_data_under_drillkit_data(tmp_path) -> None:
    """The layout setup.py gives the wheel: site/drillkit/data/{stacks,scenarios,images}."""
    site = tmp_path / "site"
    shutil.copytree(
        REPO / "drillkit", site / "drillkit", ignore=shutil.ignore_patterns("__pycache__")
    )
    for folder in ("stacks", "scenarios", "images"):
        shutil.copytree(REPO / folder, site / "drillkit" / "data" / folder)
    project = tmp_path / "project"
    project.mkdir()
    code = (
        "import drillkit.paths as p; "
        "print(p.CHECKOUT, p.DATA_DIR, p.REFERENCE_STACK.is_file(), p.project_root(), sep='|')"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out.split("|") == ["None", str(site / "drillkit" / "data"), "True", str(project)]


def test_image_hash_ignores_the_umask_but_not_the_executable_bit(tmp_path) -> None:
    """A checkout (umask 002 or 022) and an installed wheel (0644/0755) hash a context alike."""
    a, b = tmp_path / "a", tmp_path / "b"
    for ctx, mode in ((a, 0o664), (b, 0o644)):
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM x\n")
        (ctx / "Dockerfile").chmod(mode)
        (ctx / "run.sh").write_text("#!/bin/sh\n")
        (ctx / "run.sh").chmod(0o775 if ctx == a else 0o755)
    assert images.context_hash(a, "base") == images.context_hash(b, "base")
    (b / "run.sh").chmod(0o644)
    assert images.context_hash(a, "base") != images.context_hash(b, "base")


def test_root_is_the_project_not_the_package() -> None:
    assert paths.ROOT == Path.cwd().resolve()
    assert not paths.ROOT.is_relative_to(paths.PACKAGE_DIR)
