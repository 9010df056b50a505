"""kubectl, as a user runs it, wrapped for tests, demo and benchmarks (JSON in, JSON out)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localdev.waiting import wait_until


class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed ({returncode}): {stderr.strip()}")
        self.returncode, self.stderr = returncode, stderr


@dataclass
class Kubectl:
    binary: str
    kubeconfig: Path

    def run(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> str:
        done = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise KubectlError(args, done.returncode, done.stderr)
        return done.stdout if done.returncode == 0 else done.stderr

    def apply(self, obj: Mapping[str, Any] | str, *args: str) -> str:
        text = obj if isinstance(obj, str) else json.dumps(obj)
        return self.run("apply", "-f", "-", *args, input=text)

    def create(self, obj: Mapping[str, Any], *args: str) -> str:
        return self.run("create", "-f", "-", *args, input=json.dumps(obj))

    def try_create(self, obj: Mapping[str, Any]) -> tuple[bool, str]:
        """Create ``obj``; return (accepted, kubectl's output or error text as the user sees it)."""
        done = subprocess.run(
            [self.binary, f"--kubeconfig={self.kubeconfig}", "create", "-f", "-"],
            input=json.dumps(obj),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode == 0, (done.stdout + done.stderr).strip()

    def get(self, kind: str, name: str | None = None, namespace: str | None = None) -> Any:
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["-n", namespace]
        return json.loads(self.run(*args))

    def get_or_none(self, kind: str, name: str, namespace: str | None = None) -> Any:
        args = ["get", kind, name, "-o", "json", "--ignore-not-found"]
        if namespace:
            args += ["-n", namespace]
        out = self.run(*args)
        return json.loads(out) if out.strip() else None

    def events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        items = self.get("events", namespace=namespace)["items"]
        return [e for e in items if e.get("involvedObject", {}).get("name") == name]

    def wait_for(self, kind: str, name: str, namespace: str, predicate: Any, *, timeout: float, what: str) -> Any:
        """Wait until ``predicate(object)`` is true; return the object."""

        def check() -> Any:
            obj = self.get_or_none(kind, name, namespace)
            return obj if obj is not None and predicate(obj) else None

        return wait_until(check, timeout=timeout, what=f"{kind}/{name} in {namespace}: {what}")

    def wait_gone(self, kind: str, name: str, namespace: str, *, timeout: float) -> None:
        wait_until(
            lambda: self.get_or_none(kind, name, namespace) is None,
            timeout=timeout,
            what=f"{kind}/{name} in {namespace} to be deleted",
        )
