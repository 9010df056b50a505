"""Create, list and delete RdsExportTask objects through the Kubernetes API, as the operator (schedules' children,
ttlSecondsAfterFinished).

Why not the ``kubernetes`` package, which the guide prefers for child objects: it would add about ten packages
(requests, google-auth, oauthlib, websocket-client, ...) to the image for three calls, and log in differently
from kopf. ``kubeapi.KubeApi`` already logs in exactly as kopf does (ServiceAccount, else $KUBECONFIG,
again after a 401); it only lacked DELETE and a list with a query, added here by subclassing.

Why an API list per schedule tick and not kopf's watch (an index): a list is read-your-writes. A child created
at one tick is in the next tick's list, so concurrencyPolicy Forbid cannot start a second export because a watch
lagged; an index also makes kopf wait for every index before any handler runs. Cost: one small request per
schedule per poll interval, filtered on the server by the ``rdsexport.dev/schedule-uid`` label.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from rds_export_operator.api.names import GROUP, PLURAL, VERSION
from rds_export_operator.runtime.kubeapi import Conflict, KubeApi, NotFound


def _collection(namespace: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{urllib.parse.quote(namespace, safe='')}/{PLURAL}"


class TaskApi(KubeApi):
    def list_tasks(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        query = urllib.parse.urlencode({"labelSelector": label_selector})
        body = self.get(f"{_collection(namespace)}?{query}") or {}
        return [dict(item) for item in body.get("items") or []]

    def create_task(self, obj: Mapping[str, Any], dry_run: bool = False) -> bool:
        """Create; False if an object of that name exists already (for a derived name: nothing to do). With
        ``dry_run``, only ask the API server whether it would accept it (admission included: the ApiError says why
        not); nothing is stored."""
        path = _collection(obj["metadata"]["namespace"]) + ("?dryRun=All" if dry_run else "")
        try:
            self.post(path, obj)
        except Conflict:
            return False
        return True

    def delete_task(self, namespace: str, name: str, uid: str | None = None) -> bool:
        """Delete (in the background: the object's finalizer, if any, then runs); False if it was gone. With
        ``uid``, only that object: not a newer one of the same name."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            self.request("DELETE", f"{_collection(namespace)}/{urllib.parse.quote(name, safe='')}", body)
        except (NotFound, Conflict):  # gone, or replaced by another object of that name
            return False
        return True
