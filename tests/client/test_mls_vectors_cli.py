"""``python -m veilpost.mls.vectors``: kind detection, counting, failure reporting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import MLS_VECTORS, load_json

from veilpost.mls.vectors.__main__ import detect_kind, main


def _last_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_runs_files_and_ends_with_the_totals(capsys: pytest.CaptureFixture[str]) -> None:
    files = [str(MLS_VECTORS / "tree-math.json"), str(MLS_VECTORS / "crypto-basics.json")]
    assert main([*files, "--backend", "pure"]) == 0
    # 10 tree-math cases; crypto-basics has suites 1..7, of which we implement 1 and 3.
    assert _last_line(capsys) == "12 passed, 0 failed, 5 skipped"


def test_kind_detected_from_contents_when_the_name_says_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    renamed = tmp_path / "vectors-from-elsewhere.json"
    renamed.write_text((MLS_VECTORS / "deserialization.json").read_text())
    assert detect_kind(renamed, load_json(renamed)) == "deserialization"
    assert main([str(renamed)]) == 0
    assert _last_line(capsys) == "14 passed, 0 failed, 0 skipped"


def test_a_wrong_expected_value_fails_with_the_case_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = load_json(MLS_VECTORS / "tree-math.json")
    cases[3]["root"] += 1
    broken = tmp_path / "tree-math.json"
    broken.write_text(json.dumps(cases))
    assert main([str(broken)]) == 1
    out = capsys.readouterr().out
    assert "tree-math.json case 3 (suite -): FAILED: VectorMismatch: root" in out
    assert out.strip().splitlines()[-1] == "9 passed, 1 failed, 0 skipped"


def test_unknown_or_unreadable_files_count_as_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = tmp_path / "mystery.json"
    unknown.write_text(json.dumps([{"nothing": "here"}]))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert main([str(unknown), str(garbage), str(tmp_path / "missing.json")]) == 1
    out = capsys.readouterr().out
    assert "unknown vector kind" in out and "cannot read" in out
    assert out.strip().splitlines()[-1] == "0 passed, 3 failed, 0 skipped"
