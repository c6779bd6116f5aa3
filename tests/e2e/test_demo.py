"""``make demo`` keeps working: it prints the decision table, exits 0 and leaves no program behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _demo_programs() -> list[str]:
    listing = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if "-Q demo.process" in line or "-Q demo.trigger" in line]


def test_demo_prints_the_table_and_exits_cleanly(tmp_path: Path) -> None:
    before = set(_demo_programs())  # another demo may be running on a shared machine: only ours must be gone
    done = subprocess.run(
        [sys.executable, "-m", "asset_post_process.devkit.demo", "--logs", str(tmp_path / "logs")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Redis:" in out
    assert "new photo" in out
    assert "forced re-run" in out
    assert "10 events, 24 addon decisions: 7 called, 16 skipped, 1 duplicate(s) not re-sent" in out
    assert "the simulator answered 7 addon call(s)" in out
    assert set(_demo_programs()) <= before
