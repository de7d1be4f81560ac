"""``python -m ops.bench`` (``make bench``): ticketq beside a textbook Celery task, measured
in the same run on this machine, against the local StackOne stand-in.

- ``baseline``: the textbook Celery app and task;
- ``measure``: percentiles, CPU and RSS of process trees from ``/proc``;
- ``scenarios``: single, bulk, rate-limited import with interactive latency, enqueue, memory;
- ``report``: the rich table, the targets and ``docs/performance.md``.
"""
