"""A real headless Chromium driving the dashboard of a real installation: a private Redis,
the stand-in slowed so a batch takes seconds, a real worker, and a real ``ticketq web``
process with tokens configured.

Chromium and its driver come from Debian (``chromium``, ``chromium-driver``). Missing,
they are installed when the tests run as root (as CI does on a clean machine); otherwise
the tests are skipped with a message naming what is missing and how to install it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from ops.fakeapi_client import FakeApiControl, FakeApiOptions
from ops.processes import ManagedProcess
from ops.redis_server import free_port
from ops.stack import LocalStack, StackConfig
from tests.integration.support import FAST_RETRIES

ADMIN_TOKEN = "browser-admin-token-0123456789"
READ_TOKEN = "browser-read-token-0123456789"
TOKENS = f"ops-admin:admin:{ADMIN_TOKEN},ops-viewer:read:{READ_TOKEN}"
LATENCY_MS = 400  # with the account cap of 10 in flight, about 25 tickets a second
BINARIES = {"chromium": "chromium", "chromedriver": "chromium-driver"}  # binary -> package


def _find(binary: str) -> str | None:
    return shutil.which(binary) or next(
        (
            path
            for path in (f"/usr/bin/{binary}", f"/usr/lib/chromium/{binary}")
            if os.access(path, os.X_OK)
        ),
        None,
    )


def _missing() -> list[str]:
    return [binary for binary in BINARIES if _find(binary) is None]


def _install(missing: list[str]) -> None:
    """``apt-get install`` what is missing, when root (a CI machine); else nothing."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    packages = [BINARIES[binary] for binary in missing]
    subprocess.run(["apt-get", "update"], check=False, capture_output=True, timeout=300)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    subprocess.run(command, check=False, capture_output=True, timeout=600, env=env)


@pytest.fixture(scope="session")
def chromium_paths() -> tuple[str, str]:
    """The chromium and chromedriver binaries, installed first if root and missing."""
    missing = _missing()
    if missing:
        _install(missing)
        missing = _missing()
    if missing:
        packages = " ".join(BINARIES[binary] for binary in missing)
        pytest.skip(
            f"no {' or '.join(missing)} on this machine: the browser tests need Debian's "
            f"packages (as root: apt-get install -y {packages})"
        )
    return _find("chromium") or "", _find("chromedriver") or ""


@dataclass
class Dashboard:
    """The web service under test and the installation behind it."""

    url: str
    stack: LocalStack
    fake_api: FakeApiControl
    web: ManagedProcess  # its log is what an operator reads


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    run_dir: Path = tmp_path_factory.mktemp("browser")
    config = StackConfig(
        run_dir=run_dir,
        workers=1,
        fake_api=FakeApiOptions(latency_ms=LATENCY_MS),
        settings_env=dict(FAST_RETRIES),
    )
    with LocalStack(config) as stack:
        port = free_port()
        env = {**stack.child_env(), "TICKETQ_WEB_TOKENS": TOKENS}
        web = ManagedProcess.ticketq("web", ["web", "--port", str(port)], run_dir / "web.log", env)
        web.start()
        url = f"http://127.0.0.1:{port}"
        try:
            web.wait_until(lambda: _answers(url), timeout=30, what="serving")
            control = FakeApiControl(stack.fake_api_url)
            yield Dashboard(url, stack, control, web)
            control.close()
        finally:
            web.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/signin", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def browser(chromium_paths: tuple[str, str]) -> Iterator[webdriver.Chrome]:
    binary, driver = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()
