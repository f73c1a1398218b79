"""Paths, vector loading and backend list shared by the ``veilpost`` library tests.

Standard library and ``veilpost`` only: these tests also run inside Pyodide.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from veilpost.crypto.backend import native_available

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("VEILPOST_SHARED", ROOT.parent / "shared"))
MLS_VECTORS = SHARED / "vectors" / "mls"
WYCHEPROOF = SHARED / "vectors" / "wycheproof"
DATA = Path(__file__).resolve().parent / "data"

IN_PYODIDE = sys.platform == "emscripten"

if native_available():
    BACKENDS = ["native", "pure"]
elif os.environ.get("CI") and not IN_PYODIDE:
    raise RuntimeError(
        "CI=true but the native crypto backend does not load: install veilpost[native]"
    )
else:
    BACKENDS = ["pure"]

# What each vector-driven test ran, printed at the end of the session by conftest.py.
VECTOR_COUNTS: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))


def load_json(path: Path) -> Any:
    """Load a vector file, failing clearly if ``../shared`` is not beside the checkout."""
    if not path.exists():
        raise FileNotFoundError(f"test vectors not found at {path}; set VEILPOST_SHARED")
    with path.open() as f:
        return json.load(f)


def h(value: str) -> bytes:
    """Decode a hex string from a vector file."""
    return bytes.fromhex(value)
