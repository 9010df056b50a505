"""The container image definition without building it: hadolint-clean, multi-stage, pinned and non-root."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from localdev.controlplane import REPO

DOCKERFILE = REPO / "Dockerfile"


def directive(name: str) -> list[str]:
    return re.findall(rf"^{name}\s+(.+)$", DOCKERFILE.read_text(), flags=re.MULTILINE)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_multi_stage_pinned_and_non_root() -> None:
    bases = directive("FROM")
    assert len(bases) == 2
    assert all(re.match(r"python:\d+\.\d+\.\d+-slim-\w+", b) for b in bases), bases
    user = directive("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert "--require-hashes" in DOCKERFILE.read_text()
