"""The dashboard in a real browser: an admin signs in, watches a bulk import's progress
bar move without reloading, opens a job the stand-in refused and replays it; a reader
sees no replay button, and a form posted without its CSRF token is refused; the tokens
typed in appear in no page and no log line.

``TICKETQ_DASHBOARD_PNG=docs/dashboard.png`` (``make screenshot``) also saves the
dashboard mid-import, with some failures, as the README's picture.
"""

from __future__ import annotations

import base64
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from producers import Producer
from tests.browser.conftest import ADMIN_TOKEN, READ_TOKEN, Dashboard

pytestmark = [pytest.mark.browser, pytest.mark.integration]

TICKETS = 200
FAIL_EVERY = 8  # the stand-in refuses every 8th ticket (422), once
REFUSAL = "Priority <b>urgent</b> is not a priority of this project"
T = TypeVar("T")


def wait_for(browser: webdriver.Chrome, what: Callable[[], T | None], timeout: float = 20) -> T:
    """``what()`` once it is truthy; an element swapped out meanwhile is looked up again."""

    def attempt(_: object) -> T | None:
        try:
            return what()
        except StaleElementReferenceException:
            return None

    found = WebDriverWait(browser, timeout, poll_frequency=0.1).until(attempt)
    assert found  # until() returns only a truthy answer, or raises TimeoutException
    return found


def sign_in(browser: webdriver.Chrome, dashboard: Dashboard, token: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{dashboard.url}/")
    assert "/signin" in browser.current_url
    browser.find_element(By.NAME, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "main form button").click()
    wait_for(browser, lambda: browser.current_url == f"{dashboard.url}/")


def import_with_failures(dashboard: Dashboard) -> str:
    """A bulk import of ``TICKETS`` tickets, every ``FAIL_EVERY``-th refused once by the
    stand-in; its batch id."""
    run = uuid.uuid4().hex[:8]
    titles = [f"Browser ticket {run} {i}" for i in range(TICKETS)]
    for title in titles[::FAIL_EVERY]:
        dashboard.fake_api.script(
            title, {"status": 422, "message": REFUSAL, "provider_errors": [{"field": "priority"}]}
        )
    producer = Producer(dashboard.stack.settings())
    try:
        producer.submit("acct-browser", {"title": f"Interactive {run}"}, ref=f"alert-{run}")
        tickets = [{"title": title} for title in titles]
        refs = [f"row-{i}" for i in range(TICKETS)]
        return producer.submit_many("acct-browser", tickets, refs).batch_id
    finally:
        producer.close()


def progress(browser: webdriver.Chrome, batch_id: str) -> tuple[int, int]:
    """The batch's (final, total) as its line on the overview says now."""
    text = browser.find_element(
        By.XPATH, f"//ul[@class='batches']/li[.//a[text()='{batch_id}']]//span[@class='count']"
    ).text
    found = re.match(r"([\d,]+) / ([\d,]+)", text)
    assert found, text
    done, total = (int(part.replace(",", "")) for part in found.groups())
    return done, total


def failures_shown(browser: webdriver.Chrome) -> list[str]:
    links = browser.find_elements(
        By.XPATH, "//h2[starts-with(., 'Recent failures')]/following-sibling::table//a"
    )
    return [link.text for link in links]


def save_screenshot(browser: webdriver.Chrome, path: Path) -> None:
    """The whole page, as tall as it is (Chromium's own capture, beyond the viewport)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = browser.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def post_without_csrf(browser: webdriver.Chrome, path: str, csrf: str | None = None) -> int:
    """The status a form's POST gets from this page's origin, with or without its token."""
    status: int = browser.execute_async_script(
        """
        const [path, csrf, done] = arguments;
        const body = new URLSearchParams();
        if (csrf !== null) body.set("csrf", csrf);
        fetch(path, {method: "POST", body: body, redirect: "manual"}).then(r => done(r.status));
        """,
        path,
        csrf,
    )
    return status


def test_an_admin_watches_an_import_and_replays_a_failed_job_a_reader_cannot(
    dashboard: Dashboard, browser: webdriver.Chrome
) -> None:
    sign_in(browser, dashboard, ADMIN_TOKEN)
    batch_id = import_with_failures(dashboard)
    browser.execute_script("window.notReloaded = true")

    # The batch appears, and its bar moves while the page stays as it was loaded.
    first, total = wait_for(browser, lambda: progress(browser, batch_id))
    assert total == TICKETS and first < TICKETS
    wait_for(browser, lambda: progress(browser, batch_id)[0] > first)
    assert browser.execute_script("return window.notReloaded === true")

    # Mid-import with some failures: the moment the README's picture shows.
    wait_for(browser, lambda: len(failures_shown(browser)) >= 3)
    picture = os.environ.get("TICKETQ_DASHBOARD_PNG")
    if picture:
        wait_for(browser, lambda: progress(browser, batch_id)[0] >= TICKETS // 3)
        save_screenshot(browser, Path(picture))

    # A failed job: its page shows StackOne's refusal as text, and replay requeues it.
    failed_id = failures_shown(browser)[0]
    browser.find_element(By.LINK_TEXT, failed_id).click()
    wait_for(browser, lambda: browser.find_element(By.CSS_SELECTOR, "h1 .state").text == "failed")
    assert REFUSAL in browser.find_element(By.CSS_SELECTOR, ".message").text
    browser.find_element(By.XPATH, "//button[text()='Replay']").click()
    assert "queued again" in wait_for(
        browser, lambda: browser.find_element(By.CLASS_NAME, "notice").text
    )
    browser.execute_script("window.notReloaded = true")
    # The stand-in's refusal was scripted once: sent again, the ticket is made.
    wait_for(
        browser, lambda: browser.find_element(By.CSS_SELECTOR, "h1 .state").text == "succeeded"
    )
    assert browser.execute_script("return window.notReloaded === true")
    assert browser.find_elements(By.XPATH, "//button[text()='Replay']") == []

    # A form posted without the session's CSRF token is refused, even for an admin.
    other_failed = next(
        job for job in failures_in_dead_letters(browser, dashboard) if job != failed_id
    )
    assert post_without_csrf(browser, f"/jobs/{other_failed}/replay") == 403

    # A reader sees the failed job, with no replay button, and is refused if it posts anyway.
    sign_in(browser, dashboard, READ_TOKEN)
    browser.get(f"{dashboard.url}/jobs/{other_failed}")
    assert browser.find_element(By.CSS_SELECTOR, "h1 .state").text == "failed"
    assert browser.find_elements(By.XPATH, "//button[text()='Replay']") == []
    csrf = browser.find_element(By.CSS_SELECTOR, "form[action='/signout'] input[name=csrf]")
    token = csrf.get_attribute("value")
    assert post_without_csrf(browser, f"/jobs/{other_failed}/replay", token) == 403

    # The tokens typed in were never shown back, nor logged.
    for secret in (ADMIN_TOKEN, READ_TOKEN):
        assert secret not in browser.page_source and secret not in dashboard.web.log_text()


def failures_in_dead_letters(browser: webdriver.Chrome, dashboard: Dashboard) -> list[str]:
    browser.get(f"{dashboard.url}/dead")
    links = browser.find_elements(By.CSS_SELECTOR, "main table a.mono")
    return [link.text for link in links]
