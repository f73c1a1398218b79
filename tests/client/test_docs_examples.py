"""The usage examples in the library's docstrings run as written."""

from __future__ import annotations

import textwrap

import veilpost.crypto
import veilpost.mls


def _example(module: object) -> str:
    doc = module.__doc__ or ""
    block = doc.split("::\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


def test_mls_module_example_runs() -> None:
    code = _example(veilpost.mls)
    assert "Group.create" in code and "join_from_welcome" in code
    exec(compile(code, "veilpost.mls docstring", "exec"), {})


def test_crypto_module_example_runs() -> None:
    code = _example(veilpost.crypto)
    assert "get_cipher_suite" in code
    exec(compile(code, "veilpost.crypto docstring", "exec"), {"epoch_secret": bytes(32)})
