"""The build step that makes the repository's top-level stacks/, scenarios/ and images/ package
data of the wheel (as drillkit/data/<folder>/...), so an installed drillkit finds its reference
stack, its built-in scenarios and its image build contexts (drillkit.paths). The checkout keeps its
layout; everything else is declared in pyproject.toml."""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
DATA_DIRS = ("stacks", "scenarios", "images")
"""Top-level folders shipped inside the package as drillkit/data/<folder>."""


def _data_packages() -> dict[str, Path]:
    """drillkit.data.<folder>[.<sub>...] -> its folder, for every folder under DATA_DIRS
    (each is listed, so setuptools ships its files and warns about none)."""
    out: dict[str, Path] = {}
    for top in DATA_DIRS:
        for folder in [HERE / top, *sorted(p for p in (HERE / top).rglob("*") if p.is_dir())]:
            if "__pycache__" in folder.parts:
                continue
            out[".".join(("drillkit", "data", *folder.relative_to(HERE).parts))] = folder
    return out


DATA = _data_packages()

setup(
    packages=[*find_packages(include=["drillkit", "drillkit.*"]), *DATA],
    package_dir={"": ".", **{f"drillkit.data.{d}": d for d in DATA_DIRS}},
    package_data={
        name: sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".pyc")
        for name, folder in DATA.items()
    },
)
