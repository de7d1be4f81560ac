"""``python -m ops.cli``: how ticketq starts its own child processes (same interpreter)."""

from ops.cli.app import main

main()
