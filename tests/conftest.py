import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ignite_app.cli.launch import free_port  # noqa: F401  (for the tests: from conftest import free_port)

ROOT = Path(__file__).resolve().parents[1]

# Many tests train in subprocesses, and `make test` runs two test workers at once: one compute thread per process
# keeps them from fighting over the cores (a busy core makes torch's waiting threads spin: runs get several times
# slower). Results do not depend on it: every comparison in the suite runs under the same setting.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)


def run_script(script: str, *args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>`` in a fresh interpreter, as a user would."""
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **kwargs)


@pytest.fixture
def quick_args(tmp_path):
    """Command-line options for a short run into tmp_path/run."""
    return ["--epochs", "2", "--epoch-length", "5", "--output-dir", tmp_path, "--run-name", "run", "--no-progress",
            "--log-every", "2"]


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """The model zoos' caches (TORCH_HOME, HF_HUB_CACHE) in empty folders under tmp_path, the offline switches and
    proxies unset: no zoo test reads or writes the user's caches."""
    from ignite_app.models.pretrained import OFFLINE_VARIABLES

    torch_home, hf_cache = tmp_path / "torch", tmp_path / "hf"
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_cache))
    proxies = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
    for name in (*OFFLINE_VARIABLES, *proxies):
        monkeypatch.delenv(name, raising=False)
    return {"torch": torch_home, "hf": hf_cache}
