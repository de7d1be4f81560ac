"""``ticketq flower`` without Flower installed: one line saying how to get it."""

from __future__ import annotations

import importlib.util

import pytest
from typer.testing import CliRunner

from ops.cli.app import app


def test_ticketq_flower_without_flower_installed_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "flower" else found(name)
    )

    result = CliRunner().invoke(app, ["flower", "--port=5599"])

    assert result.exit_code == 2
    assert "pip install 'ticketq[flower]'" in result.output
    assert "Traceback" not in result.output
