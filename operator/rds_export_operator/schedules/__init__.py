"""RdsExportSchedule: cron expressions, the schedule's decisions (pure), snapshot listing, child RdsExportTasks, and
the kopf handlers. May use exports/' decision types, never its handlers."""
