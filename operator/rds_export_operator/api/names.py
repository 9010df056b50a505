"""The API's names in one place: group, version, plurals, the finalizer and the annotation prefix."""

from __future__ import annotations

GROUP = "rdsexport.dev"
VERSION = "v1alpha1"
PLURAL = "rdsexporttasks"
SCHEDULE_PLURAL = "rdsexportschedules"
WATCHED = (PLURAL, SCHEDULE_PLURAL)  # kopf holds one watch stream per resource and namespace
KIND = "RdsExportTask"
# Prefix for the operator's own annotations (kopf progress, diff-base) and its finalizer.
ANNOTATION_PREFIX = "rdsexport.dev"
FINALIZER = f"{ANNOTATION_PREFIX}/finalizer"
COMPONENT = "rds-export-operator"  # Events' reporting component ("From" in kubectl describe)
