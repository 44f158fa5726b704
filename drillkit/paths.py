"""Where drillkit finds files. Two roots, never mixed:

- drillkit's own data: the reference stack file, the built-in scenarios and the image build
  contexts. In a checkout (an editable install, or PYTHONPATH) they are the repository's top-level
  stacks/, scenarios/ and images/; in an installed wheel they are package data under
  drillkit/data/ (setup.py maps the same folders there), found through importlib.resources.
- the team's project: where its stack files, scenarios, policy, reports/ and .run/ live, and whose
  git commit a drill records. That is the working directory (the CLI) or pytest's rootdir (the
  plugin passes it on), never site-packages.

Every path computed from `__file__` is computed here, once.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from drillkit.errors import EnvironmentBroken

PACKAGE_DIR = Path(str(resources.files("drillkit")))
"""The drillkit package itself (a folder: wheels install unzipped)."""


def _checkout() -> Path | None:
    """The drillkit repository this package is imported from, when it is one."""
    root = PACKAGE_DIR.parent
    if (root / "pyproject.toml").is_file() and (root / "stacks" / "reference.yaml").is_file():
        return root
    return None


CHECKOUT = _checkout()
"""The drillkit checkout (None in an installed wheel): only drillkit's own tests need it."""
DATA_DIR = CHECKOUT if CHECKOUT is not None else PACKAGE_DIR / "data"
"""drillkit's own data: holds stacks/, scenarios/ and images/."""
STACKS_DIR = DATA_DIR / "stacks"
SCENARIOS_DIR = DATA_DIR / "scenarios"
"""The built-in scenarios (the team's own are in its project's scenarios/)."""
IMAGES_DIR = DATA_DIR / "images"
"""The build contexts of the reference stack's images: images/<name>/Dockerfile."""
REFERENCE_STACK = STACKS_DIR / "reference.yaml"


def project_root() -> Path:
    """The team's project: the working directory (pytest passes its rootdir explicitly)."""
    try:
        return Path.cwd().resolve()
    except OSError as exc:  # the working directory was removed
        raise EnvironmentBroken(f"no working directory to use as the project: {exc}") from None


def __getattr__(name: str) -> Path:
    """`ROOT`: the team's project when it is asked for (`from drillkit.paths import ROOT` in the
    CLI: its working directory): its reports/, .run/ and scenarios/. Code that knows pytest's
    rootdir uses that instead."""
    if name == "ROOT":
        return project_root()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def project_scenarios(project: Path | None = None) -> Path:
    """The project's scenarios/ when it has one, else drillkit's built-in scenarios."""
    own = (project or project_root()) / "scenarios"
    return own if own.is_dir() else SCENARIOS_DIR
