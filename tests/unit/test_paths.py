"""Every path drillkit computes from its own location (drillkit/paths.py) finds the checkout's
files after the move into packages: the reference stack, the scenarios and the image contexts."""

from drillkit.core import runner
from drillkit.paths import IMAGES_DIR, REFERENCE_STACK, ROOT, SCENARIOS_DIR, STACKS_DIR
from drillkit.stack import images, spec


def test_paths_find_the_projects_files() -> None:
    assert (ROOT / "pyproject.toml").is_file()
    assert REFERENCE_STACK.is_file() and REFERENCE_STACK.parent == STACKS_DIR
    assert (SCENARIOS_DIR / "db-kill-restart.yaml").is_file()
    assert (SCENARIOS_DIR / "sabotage").is_dir()
    for name in ("postgres", "app", "toxiproxy", "web", "payments"):
        assert (IMAGES_DIR / name / "Dockerfile").is_file(), name


def test_modules_use_the_one_set_of_paths() -> None:
    assert images.IMAGES_DIR == IMAGES_DIR
    assert spec.REFERENCE == REFERENCE_STACK
    assert runner.RunConfig().results_dir.is_relative_to(ROOT)
    assert spec.load_stack(None).database.image  # the default stack file loads from its path
