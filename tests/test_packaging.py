"""The wheel users install: typed, named as on the index, with its data files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import agentbudget as ab

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_built_wheel_is_typed_and_carries_its_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name == f"agentbudget_sdk-{ab.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        dist_info = f"agentbudget_sdk-{ab.__version__}.dist-info"
        metadata = archive.read(f"{dist_info}/METADATA").decode()
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
    assert "agentbudget/py.typed" in names  # PEP 561: type checkers use the inline types
    assert "agentbudget/data/prices.json" in names
    assert "agentbudget/data/routing_eval.jsonl" in names  # route-eval shipped / holdout
    assert "agentbudget/data/routing_holdout.jsonl" in names
    assert any(n.startswith("agentbudget/data/tokenizers/") for n in names)
    assert {n for n in names if n.startswith("agentbudget/stores/lua/")} == {
        f"agentbudget/stores/lua/{p.name}" for p in (ROOT / "agentbudget/stores/lua").iterdir()
    }
    assert "Name: agentbudget-sdk\n" in metadata
    assert f"Version: {ab.__version__}\n" in metadata
    assert "agentbudget = agentbudget.cli:main" in entry_points  # the console script
    assert "agentbudget = agentbudget.pytest_plugin" in entry_points  # the pytest plugin
    assert not any(n.startswith(("tests/", "docs/")) for n in names)
