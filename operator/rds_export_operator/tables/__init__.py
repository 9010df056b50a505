"""The table report: parsing of the export's own info files (pure), the report's decisions, and its kopf handlers.
May use exports/' decision types (Result, Event, RetryPolicy), never its handlers."""
