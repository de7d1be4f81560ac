"""One delivery of a message: the task, the runner, the pure decisions, reconciliation,
retry timing and the event loop every request runs on."""
