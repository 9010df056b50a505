"""RdsExportTask: the reconciler's decisions (pure), coalesced polling with the account's export slots, wake-ups,
and the kopf handlers that wire them. Handlers -> polling -> decisions; only ``__main__`` imports the handlers."""
