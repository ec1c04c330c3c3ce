import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(script: str, *args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>`` in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture
def quick_args(tmp_path):
    """Command-line options for a short run into tmp_path/run."""
    return ["--epochs", "2", "--epoch-length", "5", "--output-dir", tmp_path, "--run-name", "run", "--no-progress",
            "--log-every", "2"]
