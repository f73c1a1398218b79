"""Extract RFC 9180 Appendix A base-mode vectors for the suites Veilpost uses.

Run once (the output is committed):

    python tests/client/data/extract_hpke_vectors.py ../shared/reference/hpke-rfc9180.md \
        > tests/client/data/hpke_rfc9180.json

It reads the "Base Setup Information", "Encryptions" and "Exported Values" blocks of the
sections for DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 with AES-128-GCM and ChaCha20Poly1305.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

SECTIONS = {
    "## DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM": "aes128gcm",
    "## DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305": "chacha20poly1305",
}
FIELD = re.compile(r"^([A-Za-z_ ]+):\s*(.*)$")


def parse_records(lines: list[str]) -> list[dict[str, str]]:
    """Parse ``key: value`` records (values may wrap onto following lines), blank-separated."""
    records: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = None
    for line in [*lines, ""]:
        line = line.strip()
        if not line:
            if current:
                records.append(current)
            current, key = {}, None
            continue
        match = FIELD.match(line)
        if match:
            key = match.group(1)
            current[key] = match.group(2)
        elif key is not None:
            current[key] += line
    return records


def code_blocks(lines: list[str]) -> dict[str, list[str]]:
    """Map each ``###``/``####`` heading to the lines of its code block.

    Only the first occurrence of a heading counts: the base mode comes first in each section,
    and the PSK/Auth modes reuse the same sub-headings.
    """
    blocks: dict[str, list[str]] = {}
    heading = None
    inside = False
    for line in lines:
        if line.startswith("~~~"):
            if inside:
                inside = False
                heading = None
            elif heading is not None and heading not in blocks:
                inside = True
                blocks[heading] = []
            else:
                inside = True
                heading = None
            continue
        if inside and heading is not None:
            blocks[heading].append(line)
        elif line.startswith("#"):
            heading = line.lstrip("#").strip()
    return blocks


def extract(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    out = []
    for header, name in SECTIONS.items():
        start = lines.index(header)
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("## "))
        blocks = code_blocks(lines[start + 1 : end])
        (setup,) = parse_records(blocks["Base Setup Information"])
        assert setup["mode"] == "0", setup
        out.append(
            {
                "name": name,
                **{k.replace(" ", "_"): v for k, v in setup.items()},
                "encryptions": parse_records(blocks["Encryptions"]),
                "exports": parse_records(blocks["Exported Values"]),
            }
        )
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        json.dump(extract(f.read()), sys.stdout, indent=1)
        sys.stdout.write("\n")
