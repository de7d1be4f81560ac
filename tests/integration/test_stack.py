"""The local stack the demo and the tests run (``ops/stack.py``), where it meets the
machine: a port found free that something else takes before the stand-in binds it."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx

from ops.stack import LocalStack, StackConfig


def test_a_stand_in_port_taken_meanwhile_is_given_up_for_another(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        stack = LocalStack(StackConfig(run_dir=tmp_path, workers=0))
        stack.fake_api_port = taken.getsockname()[1]
        try:
            stack.start()

            assert stack.fake_api_port != taken.getsockname()[1]
            assert httpx.get(f"{stack.fake_api_url}/_fake/health", timeout=2).status_code == 200
        finally:
            stack.stop()
