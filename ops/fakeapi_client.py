"""Start and drive the stand-in (``ops/fakeapi.py``) from outside: the options it starts
with, and its control API (``/_fake``) to script faults and read what it received.

The demo and the tests program faults the same way, through this one client. Neither
loads the stand-in itself: it runs in its own process (``ticketq fake-api``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import httpx


class _Unset(Enum):
    UNSET = "unset"


_UNSET = _Unset.UNSET

ListStyle = Literal["verbatim", "provider", "sparse"]


@dataclass
class FakeApiOptions:
    """How the stand-in behaves; ``/_fake/config`` changes all but ``api_key`` and
    ``accounts`` while it runs."""

    api_key: str | None = None  # None: any non-empty username is accepted
    latency_ms: float = 0.0  # added to every ticketing request
    rpm_limit: int | None = None  # per API key, strict sliding 60 s window
    error_rate: float = 0.0  # fraction of create requests answered 500 before creating
    accounts: frozenset[str] | None = None  # if set, other x-account-id values get 404
    auth_failure: int | None = None  # 401 or 403: refuse every request, as for a revoked key
    list_lag_ms: float = 0.0  # listed only this long after creation; a read by id at once
    list_style: str = "verbatim"  # a ListStyle: how reads show a ticket (see ops/fakeapi.py)


class FakeApiControl:
    def __init__(self, base_url: str) -> None:
        self._http = httpx.Client(base_url=f"{base_url}/_fake", timeout=5.0)

    def script(self, title: str, *steps: dict[str, Any]) -> None:
        """The next requests for ``title`` get these answers, in order, then normal ones."""
        self._post("/script", {"title": title, "responses": list(steps)})

    def configure(
        self,
        *,
        latency_ms: float | _Unset = _UNSET,
        rpm_limit: int | _Unset | None = _UNSET,
        error_rate: float | _Unset = _UNSET,
        auth_failure: Literal[401, 403] | _Unset | None = _UNSET,
        list_lag_ms: float | _Unset = _UNSET,
        list_style: ListStyle | _Unset = _UNSET,
    ) -> dict[str, Any]:
        """Change the stand-in's live options; those not given stay as they are.

        ``auth_failure`` 401 or 403 makes every ticketing request fail with that status, as
        for a revoked API key, until it is set back to ``None``. ``list_lag_ms`` and
        ``list_style`` shape what reconciliation reads back. Returns the options now in
        force (never the API key).
        """
        given = {
            "latency_ms": latency_ms,
            "rpm_limit": rpm_limit,
            "error_rate": error_rate,
            "auth_failure": auth_failure,
            "list_lag_ms": list_lag_ms,
            "list_style": list_style,
        }
        response = self._http.post(
            "/config", json={name: value for name, value in given.items() if value is not _UNSET}
        )
        response.raise_for_status()
        options: dict[str, Any] = response.json()
        return options

    def create_elsewhere(self, account_id: str, ticket: dict[str, Any]) -> dict[str, Any]:
        """Create ``ticket`` (a create body) in the account as another user of the customer's
        tool would: listed like ours, counted in ``created_elsewhere``, never in ``created``.
        Returns its ``id`` and ``remote_id``."""
        response = self._http.post("/tickets", json={"account_id": account_id, "ticket": ticket})
        response.raise_for_status()
        created: dict[str, Any] = response.json()
        return created

    def reset(self) -> None:
        self._post("/reset", {})

    def stats(self) -> dict[str, Any]:
        response = self._http.get("/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def created(self, title: str) -> int:
        """Tickets the stand-in created with this title: more than one is a duplicate."""
        return int(self.stats()["created_by_title"].get(title, 0))

    def arrivals(self, title: str) -> list[float]:
        """Unix times at which requests for this title arrived."""
        return [float(t) for t in self.stats()["requests_by_title"].get(title, [])]

    def _post(self, path: str, body: dict[str, Any]) -> None:
        self._http.post(path, json=body).raise_for_status()

    def close(self) -> None:
        self._http.close()
