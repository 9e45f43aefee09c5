"""The README and docs show what benchmarks/results and the code say: every rendered block is
current (``benchmarks/render_readme.py --check``), and the README stays a short user guide."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_rendered_blocks_match_the_results_and_the_code():
    proc = subprocess.run([sys.executable, "benchmarks/render_readme.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "README.md is up to date" in proc.stdout


def test_readme_is_a_user_guide_with_the_two_quick_start_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 300
    quick = text.split("## Quick start", 1)[1].split("```", 2)[1]
    assert [line.split()[:2] for line in quick.splitlines() if line.strip() and not line.startswith("bash")] == [
        ["make", "run"], ["make", "test"]]
    assert "FER+ Test" in text
