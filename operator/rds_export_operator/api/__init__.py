"""The API of the custom resources: their names, the typed view of a spec, the mapping of an AWS export task to
status and conditions. Pure: imports nothing of the operator (checked by ``.importlinter``), so every other package
may use it."""
