"""The web service (``ticketq web``): HTTP intake for any language, the ops dashboard and
the fleet's metrics, one FastAPI app whose state all lives in Redis, so several processes
may serve it behind a load balancer."""
