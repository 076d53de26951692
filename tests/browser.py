"""A headless Chromium driven by Selenium for the dashboard's tests (tests/test_ui_browser.py).

Without /usr/bin/chromium and /usr/bin/chromedriver the tests skip, unless
``PGJOBS_REQUIRE_BROWSER=1`` (CI) where a missing browser fails them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SHOTS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


def browser() -> Iterator[object]:
    """A headless Chromium at 1280x800, quit afterwards."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        reason = "no chromium/chromedriver (apt-get install chromium chromium-driver)"
        if os.environ.get("PGJOBS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"PGJOBS_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,800")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: object, name: str) -> None:
    """docs/screenshots/<name>.png when ``PGJOBS_SCREENSHOTS=1`` (CI leaves the checkout clean)."""
    if os.environ.get("PGJOBS_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"{name}.png"))  # type: ignore[attr-defined]
