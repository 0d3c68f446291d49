"""Shared fixtures: the didmark CLI under test and a scratch folder."""
import os
import shutil
import subprocess

import pytest

# scripts/test.sh runs the Python package's own tests against the installed package (pip install
# . into a virtual environment) after CTest; CTest's build-tree run (python_suite) leaves them to
# that stage then.
if os.environ.get("DIDMARK_PACKAGE_TESTS_LATER") == "1":
    collect_ignore_glob = ["test_package*.py", "test_bindings.py", "test_torch_*.py", "test_ray*.py"]


@pytest.fixture(scope="session")
def cli():
    exe = os.environ.get("DIDMARK_CLI") or shutil.which("didmark")
    if not exe:
        pytest.skip("DIDMARK_CLI not set and no didmark on PATH")
    return exe


@pytest.fixture
def run(cli):
    """run(*args, check=True) -> CompletedProcess with text stdout/stderr."""

    def _run(*args, check=True, input=None):
        p = subprocess.run([cli, *map(str, args)], capture_output=True, text=True, input=input)
        if check and p.returncode != 0:
            raise AssertionError(f"didmark {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
        return p

    return _run
