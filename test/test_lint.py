"""Style checks as tests (as ament_flake8 does): flake8 over the code, setup.cfg's rules."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_flake8_is_clean():
    run = subprocess.run([sys.executable, "-m", "flake8", "egox_model", "egox_ros", "test",
                          "launch", "setup.py"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
