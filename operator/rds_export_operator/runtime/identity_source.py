"""Where the identity mapping comes from: one ConfigMap in the operator's namespace, read again every few seconds.

Why a periodic GET and not a kopf handler or a watch:

- kopf's namespaces are global: an operator that watches only team namespaces (``--namespace``) would not see its
  own namespace, and a cluster-wide one would list and watch every ConfigMap in the cluster (RBAC to read them all,
  memory for all of them; kopf's ``field=``/``value=`` filters on the client, not the server).
- A watch of our own (list, then watch with ``fieldSelector=metadata.name=...``) needs resourceVersion
  bookkeeping, 410 Gone handling, reconnects and a guard against silent streams; the ``kubernetes`` package would
  do that but is a new dependency.
- A GET of one small object every ``interval`` seconds (10 by default) needs none of that and is self-healing by
  construction. RBAC is the narrowest possible: ``get`` on that one ConfigMap by ``resourceNames``. A change
  applies within ``interval``, which is quick for an admin's edit (kubelet takes up to a minute to refresh a
  mounted ConfigMap). Cost: one request of a few hundred bytes per interval.

An invalid new version keeps the last good mapping in force; it is logged, posted as a Warning Event on the
ConfigMap (``kubectl describe configmap`` shows it) and counted (``collector()``). Until a first good mapping is
read, ``Identities.resolve`` raises ``IdentityUnavailable`` (fail closed: an unreadable mapping must not hand every
namespace the operator's own identity). A missing ConfigMap is no mapping either: before a first good one, no
namespace gets an identity; after one, the last good mapping stays in force (a deletion, or a ``helm upgrade`` that
renames it, must not switch refused namespaces to the operator's identity nor send cancels to another account),
and a Warning Event and the metrics (``valid`` 0, a ``missing`` read) say so. The operator's own identity for
every namespace is an explicit mapping (``"default": "operator"``), never the consequence of an absence.

Namespace labels, needed only when a rule has a ``namespaceSelector``, are fetched on demand by ``NamespaceLabels``
(a GET per namespace, cached for ``ttl`` seconds): ``get`` on namespaces, no cluster-wide list or watch, and no
cost at all when no rule has a selector.

Requests go through ``kubeapi.KubeApi`` with the operator's own Kubernetes credentials, as ``leader.py``'s do.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from rds_export_operator.api.names import COMPONENT
from rds_export_operator.aws.identity import Identities, IdentityMapping, IdentityUnavailable, MappingError
from rds_export_operator.runtime.kubeapi import KubeApi

logger = logging.getLogger(__name__)


@dataclass
class SourceState:
    loaded: bool = False  # a good mapping (or the absence of the ConfigMap) has been applied at least once
    valid: bool = False  # what the ConfigMap says now is what is in force
    rules: int = 0  # rules in force
    resource_version: str | None = None  # of the version in force; None: none yet
    error: str | None = None  # why the current version is not in force
    outcomes: Counter[str] = field(default_factory=Counter)  # applied / rejected / unreadable / missing


_ABSENT = "<absent>"


class ConfigMapSource:
    """Reads the mapping from ConfigMap ``namespace/name`` every ``interval`` seconds into ``identities``."""

    def __init__(
        self,
        identities: Identities,
        namespace: str,
        name: str,
        *,
        api: KubeApi | None = None,
        interval: float = 10.0,
    ) -> None:
        self.identities, self.namespace, self.name = identities, namespace, name
        self.api = api or KubeApi()
        self.interval = interval
        self.state = SourceState()
        self._path = f"/api/v1/namespaces/{_quote(namespace)}/configmaps/{_quote(name)}"
        self._seen: str | None = None  # resourceVersion (or _ABSENT) last acted on
        self._seen_error: str | None = None  # why that version was refused; None: it is in force
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    def start(self) -> None:
        """Read now and then every ``interval`` seconds in a daemon thread (blocking calls stay off kopf's loop)."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="identity-mapping", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval)

    def poll_once(self) -> None:
        """One GET, and apply or reject what changed. Never raises: problems end up in logs, Events and state."""
        try:
            configmap = self.api.get(self._path)
        except Exception as exc:
            self._unreadable(f"cannot read {self.where}: {exc}")
            return
        meta = (configmap or {}).get("metadata") or {}
        version = _ABSENT if configmap is None else str(meta.get("resourceVersion", ""))
        if version == self._seen:
            if self.state.error != self._seen_error:  # readable again, and unchanged
                logger.info("%s is readable again", self.where)
                self.state.valid, self.state.error = self._seen_error is None, self._seen_error
                if not self.state.loaded and self._seen_error:
                    self.identities.load_error = f"the identity mapping in {self.where} is invalid: {self._seen_error}"
            return
        self._seen, self._seen_error = version, None
        if configmap is None:
            self._seen_error = f"{self.where} does not exist"
            self._missing()
            return
        try:
            mapping = IdentityMapping.from_configmap_data(configmap.get("data"))
        except MappingError as exc:
            self._seen_error = str(exc)
            self._reject(str(exc), meta)
            return
        self._apply(mapping, meta)

    def _missing(self) -> None:
        error = f"{self.where} does not exist"
        self.state.valid, self.state.error = False, error
        self.state.outcomes["missing"] += 1
        kept = "the last good mapping stays in force" if self.state.loaded else "no namespace gets an AWS identity"
        if not self.state.loaded:
            self.identities.load_error = f"{error}; {kept} until it is created"
        logger.warning("%s; %s", error, kept)
        self._event({}, "Warning", "IdentityMappingMissing", f"{error}; {kept}")

    def _apply(self, mapping: IdentityMapping, meta: Mapping[str, Any]) -> None:
        self.identities.update(mapping)
        self.state.loaded = self.state.valid = True
        self.state.rules, self.state.error = len(mapping.rules), None
        self.state.resource_version = str(meta.get("resourceVersion"))
        self.state.outcomes["applied"] += 1
        message = f"{len(mapping.rules)} rules, default {mapping.effective_default}"
        if mapping.needs_labels:
            message += ", namespace selectors in use"
        self._event(meta, "Normal", "IdentityMappingApplied", message)
        logger.info("identity mapping from %s applied: %s", self.where, message)

    def _reject(self, error: str, meta: Mapping[str, Any]) -> None:
        self.state.valid, self.state.error = False, error
        self.state.outcomes["rejected"] += 1
        kept = "the last good mapping stays in force" if self.state.loaded else "no namespace gets an AWS identity"
        message = f"{error}; {kept}"
        if not self.state.loaded:
            self.identities.load_error = f"the identity mapping in {self.where} is invalid: {error}"
        logger.warning("%s rejected: %s", self.where, message)
        self._event(meta, "Warning", "InvalidIdentityMapping", message)

    def _unreadable(self, error: str) -> None:
        first = self.state.error != error
        self.state.valid, self.state.error = False, error
        self.state.outcomes["unreadable"] += 1
        if not self.state.loaded:
            self.identities.load_error = error
        if first:  # once per distinct problem, not every interval
            kept = "the last good mapping stays in force" if self.state.loaded else "no namespace gets an AWS identity"
            logger.warning("%s; %s", error, kept)

    def _event(self, meta: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{self.name}.", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "namespace": self.namespace,
                "name": self.name,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.api.post(f"/api/v1/namespaces/{_quote(self.namespace)}/events", body)
        except Exception as exc:  # an Event is a courtesy: the log line above says the same
            logger.debug("cannot post %s Event on %s: %s", reason, self.where, exc)

    def collector(self) -> Collector:
        return _SourceCollector(self)


class _SourceCollector(Collector):
    def __init__(self, source: ConfigMapSource) -> None:
        self._source = source

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self._source.state
        yield GaugeMetricFamily(
            "rds_export_identity_mapping_valid",
            "1 if the identity mapping ConfigMap's current content is in force, 0 if rejected or unreadable",
            value=1 if state.valid else 0,
        )
        yield GaugeMetricFamily(
            "rds_export_identity_mapping_rules", "Namespace-to-IAM-role rules in force", value=state.rules
        )
        reads = CounterMetricFamily(
            "rds_export_identity_mapping_reads",
            "Reads of the identity mapping that changed something",
            labels=["outcome"],
        )
        for outcome in ("applied", "rejected", "unreadable", "missing"):
            reads.add_metric([outcome], state.outcomes[outcome])
        yield reads


class NamespaceLabels:
    """namespace -> its labels, fetched on demand (GET) and kept ``ttl`` seconds; a label change applies within it.

    ``update`` lets a namespace watch (a kopf ``on.event`` handler) feed fresher labels, if one is wired.
    """

    def __init__(self, api: KubeApi, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.api, self.ttl, self.clock = api, ttl, clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}

    def update(self, namespace: str, labels: Mapping[str, str] | None) -> None:
        with self._lock:
            if labels is None:
                self._cache.pop(namespace, None)
            else:
                self._cache[namespace] = (self.clock(), dict(labels))

    def __call__(self, namespace: str) -> Mapping[str, str]:
        with self._lock:
            cached = self._cache.get(namespace)
        if cached is not None and self.clock() - cached[0] < self.ttl:
            return cached[1]
        try:  # outside the lock: one slow GET must not stall other namespaces
            obj = self.api.get(f"/api/v1/namespaces/{_quote(namespace)}")
        except Exception as exc:
            if cached is not None:
                logger.warning("cannot refresh the labels of namespace %s (%s); using the last known", namespace, exc)
                return cached[1]
            raise IdentityUnavailable(
                "NamespaceLabelsUnavailable", f"cannot read namespace {namespace}: {exc}"
            ) from exc
        labels = dict(((obj or {}).get("metadata") or {}).get("labels") or {})
        self.update(namespace, labels)
        return labels


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")
