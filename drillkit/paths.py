"""Where drillkit finds its own files: the project root (a checkout), its stack files, scenarios
and image build contexts. Every path computed from `__file__` is computed here, once."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The checkout: reports/, .run/ and the git commit are found from here."""
STACKS_DIR = ROOT / "stacks"
SCENARIOS_DIR = ROOT / "scenarios"
IMAGES_DIR = ROOT / "images"
REFERENCE_STACK = STACKS_DIR / "reference.yaml"
