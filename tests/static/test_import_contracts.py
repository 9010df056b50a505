"""The layers in .importlinter hold, and breaking one fails `make lint` with a message naming the rule."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(source_root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(REPO / ".importlinter")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_house_keeps_every_contract() -> None:
    run = lint_imports(REPO / "operator")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract", "chain"),
    [
        (
            "exports/reconcile.py",
            "import boto3",
            "Only aws/ talks to AWS",
            "rds_export_operator.exports.reconcile -> boto3",
        ),
        (
            "schedules/decisions.py",
            "import kopf",
            "Decisions are pure",
            "rds_export_operator.schedules.decisions -> kopf",
        ),
        (
            "tables/report.py",
            "from rds_export_operator.exports import handlers",
            "only __main__ imports a capability's handlers module",
            "rds_export_operator.tables.report -> rds_export_operator.exports.handlers",
        ),
        (
            "api/status.py",
            "from rds_export_operator.aws import errors",
            "api/ (CRD names, spec parsing, status mapping) imports nothing of the operator",
            "rds_export_operator.api.status -> rds_export_operator.aws.errors",
        ),
        (
            "catalog/schema.py",
            "from rds_export_operator.catalog import register",
            "catalog/: handlers -> registration",
            "rds_export_operator.catalog.schema -> rds_export_operator.catalog.register",
        ),
        (
            "tables/parsing.py",
            "from rds_export_operator.catalog import schema",
            "Capabilities sit above the runtime",
            "rds_export_operator.tables.parsing -> rds_export_operator.catalog.schema",
        ),
        (
            "catalog/register.py",
            "from rds_export_operator.schedules import decisions",
            "Capabilities sit above the runtime",
            "rds_export_operator.catalog.register -> rds_export_operator.schedules.decisions",
        ),
        (
            "aws/errors.py",
            "from rds_export_operator.exports import slots",
            "Capabilities sit above the runtime",
            "rds_export_operator.aws.errors -> rds_export_operator.exports.slots",
        ),
    ],
)
def test_a_broken_boundary_fails_with_the_rule_and_the_import(
    tmp_path: Path, module: str, line: str, contract: str, chain: str
) -> None:
    tree = tmp_path / "src"
    shutil.copytree(REPO / "operator" / "rds_export_operator", tree / "rds_export_operator")
    target = tree / "rds_export_operator" / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    run = lint_imports(tree)
    report = " ".join((run.stdout + run.stderr).split())  # the report wraps long names
    assert run.returncode != 0, report
    assert f"{' '.join(contract.split())}" in report
    assert chain in report, report
