"""Load a Python file of images/ (the reference app, the stub servers, the migration tool) as a
module, so unit tests run its code without a container. Each caller names its own module, so two
test files never share one loaded copy (and its module-level state)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

IMAGES = Path(__file__).resolve().parents[2] / "images"
APP_PATH = IMAGES / "app" / "app.py"


def load_image_module(name: str, path: Path) -> ModuleType:
    """Execute `path` as module `name`, registered in sys.modules first (dataclasses resolve
    string annotations through it)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
