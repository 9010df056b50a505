"""Hostile tenants (issue 23, attacks 3, 4 and 8) against the real control plane: a tenant with only ``edit`` in its
own namespace can neither hold the shared export queue (ghosts, hogs) nor take the operator's memory."""

from __future__ import annotations

from typing import Any

from constants import KIND
from localdev.kube import Kubectl
from localdev.standin.server import StandInServer
from localdev.waiting import wait_until

from .conftest import OperatorFactory, export_task, start_direct, status_is

HOLD = "example.com/hold"  # the tenant's own finalizer: kopf stops the daemon, no DELETED event comes


def as_list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": items}


def by_status(kubectl: Kubectl, namespace: str) -> dict[str, list[str]]:
    """The objects of ``namespace`` by status.status, names sorted."""
    found: dict[str, list[str]] = {}
    for obj in kubectl.get(KIND, None, namespace)["items"]:
        found.setdefault(obj.get("status", {}).get("status", ""), []).append(obj["metadata"]["name"])
    return {status: sorted(names) for status, names in found.items()}


def test_deleted_queued_objects_held_by_a_foreign_finalizer_do_not_hold_the_queue(
    kubectl: Kubectl,
    namespace: str,
    other_namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    rds_client: Any,
    operator_factory: OperatorFactory,
) -> None:
    """Attack 3: the tenant queues 5 objects, adds its own finalizer, deletes them. Before: every namespace of that
    account and region stayed QUEUED with nothing running until the operator restarted."""
    mallory, alice = other_namespace, namespace
    operator_factory(f"--namespace={mallory}")
    busy = [f"busy-{i}-{alice}" for i in range(5)]
    for ident in busy:  # all 5 slots taken by exports the operator did not start
        start_direct(rds_client, ident, snapshot_arn)
    ghosts = [f"ghost-{i}" for i in range(5)]
    held = [{**export_task(name, snapshot_arn), "metadata": {"name": name, "finalizers": [HOLD]}} for name in ghosts]
    kubectl.apply(as_list(held), "-n", mallory)
    for name in ghosts:
        kubectl.wait_for(KIND, name, mallory, status_is("QUEUED"), timeout=60, what="QUEUED")
    kubectl.run("delete", KIND, *ghosts, "-n", mallory, "--wait=false")
    kubectl.apply(export_task("victim", snapshot_arn), "-n", alice)
    kubectl.wait_for(KIND, "victim", alice, status_is("QUEUED"), timeout=30, what="QUEUED")
    try:
        for ident in busy:
            aws.standin.set_task(ident, status="COMPLETE")
        obj = kubectl.wait_for(KIND, "victim", alice, status_is("STARTING"), timeout=60, what="STARTING")
        assert obj["status"]["ownership"] == "Started"
        # The ghosts asked AWS for nothing, and are still there (only their owner's finalizer holds them).
        for name in ghosts:
            ghost = kubectl.get(KIND, name, mallory)
            assert ghost["metadata"].get("deletionTimestamp") and ghost["status"]["status"] == "QUEUED"
            assert aws.standin.call_count("StartExportTask", ghost["status"]["exportTaskIdentifier"]) == 0
    finally:
        for name in ghosts:
            kubectl.run("patch", KIND, name, "-n", mallory, "--type=merge", "-p", '{"metadata":{"finalizers":null}}')


def test_free_slots_go_round_robin_between_namespaces(
    kubectl: Kubectl,
    namespace: str,
    other_namespace: str,
    aws: StandInServer,
    snapshot_arn: str,
    operator_factory: OperatorFactory,
) -> None:
    """Attack 8: one team's exports (here 8, all older) held a shared account's 5 slots until every one of them
    ran: strictly oldest first across namespaces. Now a freed slot goes to the namespace served least recently."""
    hog, small = namespace, other_namespace
    operator_factory(f"--namespace={small}")
    names = [f"hog-{i}" for i in range(8)]
    kubectl.apply(as_list([export_task(name, snapshot_arn) for name in names]), "-n", hog)
    first = wait_until(
        lambda: (lambda s: s if len(s.get("QUEUED", [])) == 3 else None)(by_status(kubectl, hog)),
        timeout=60,
        what="5 of the hog's exports started, 3 queued",
    )
    running, waiting = first["STARTING"], first["QUEUED"]
    kubectl.apply(export_task("small", snapshot_arn), "-n", small)
    kubectl.wait_for(KIND, "small", small, status_is("QUEUED"), timeout=30, what="QUEUED")
    ident = kubectl.get(KIND, running[0], hog)["status"]["exportTaskIdentifier"]
    aws.standin.set_task(ident, status="COMPLETE")
    kubectl.wait_for(KIND, "small", small, status_is("STARTING"), timeout=60, what="the other team's STARTING")
    assert by_status(kubectl, hog).get("QUEUED") == waiting  # the hog's waiters still wait
    assert aws.standin.call_count("StartExportTask") == 6  # 5 + 1: nobody was refused for the limit
