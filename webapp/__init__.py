"""The Veilpost relay: a Django project served by Daphne (``manage.py`` lives at the repo root)."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

DISTRIBUTION = "veilpost-relay"


def _relay_version() -> str:
    """The installed ``veilpost-relay`` version, else the one in a source checkout's pyproject."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        with pyproject.open("rb") as f:
            project = tomllib.load(f)["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"
    if project.get("name") != DISTRIBUTION or not isinstance(project.get("version"), str):
        return "0+unknown"
    return str(project["version"])


__version__ = _relay_version()
