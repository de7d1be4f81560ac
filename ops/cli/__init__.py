"""The ``ticketq`` command, one module per group of sub-commands."""
