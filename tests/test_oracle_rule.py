"""The suite's own rules (tests/oracle_rule.py): an outside-oracle test never skips in CI."""

import os
import subprocess
import sys

import pytest
from helpers import REPO

SKIPPING_ORACLE = '''
import pytest

@pytest.mark.oracle
def test_against_a_missing_library():
    pytest.importorskip("a_library_that_is_not_installed")
'''


def run_pytest_on(folder, ci: str) -> subprocess.CompletedProcess:
    (folder / "test_oracle.py").write_text(SKIPPING_ORACLE)
    environment = {**os.environ, "CI": ci, "PYTHONPATH": str(REPO / "tests")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "oracle_rule", "-m", "oracle"]
    return subprocess.run([*command, "--rootdir", str(folder), "-c", "/dev/null", str(folder)],
                          cwd=folder, capture_output=True, text=True, env=environment, check=False, timeout=120)


@pytest.mark.slow
def test_a_skipped_oracle_test_fails_in_ci_and_skips_elsewhere(tmp_path):
    assert run_pytest_on(tmp_path, ci="").returncode == 0  # skipped on a developer's machine
    result = run_pytest_on(tmp_path, ci="true")
    assert result.returncode == 1 and "an outside-oracle test skipped in CI" in result.stdout, result.stdout[-2000:]
