"""Servers started with `make <target>` in their own process group, and a headless Chromium to look at them: the
helpers of the browser tests (test_ui_browser, watch/test_watch_browser); the `browser` fixture is in conftest.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from adaptive_lr.config import PROJECT_ROOT

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(target: str, env: dict[str, str], url: str, log: Path, timeout_s: float = 180) -> subprocess.Popen:
    """`make <target>` in a new session (its own process group); returns once `url` answers 200."""
    proc = subprocess.Popen(["make", "-C", str(PROJECT_ROOT), target], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"make {target} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return proc
        except OSError:
            time.sleep(1)
    stop(proc)
    pytest.fail(f"make {target} did not answer at {url} within {timeout_s:.0f} s: {log.read_text()[-2000:]}")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole group, SIGKILL after 15 s; afterwards no process of the group may be left."""
    pgid = proc.pid
    if group_alive(pgid):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while group_alive(pgid) and time.monotonic() < deadline:
        proc.poll()
        time.sleep(0.5)
    if group_alive(pgid):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=15)


def headless_chromium() -> Any:
    """A Selenium driver of Debian's headless Chromium (fails the test when it is not installed)."""
    if not (CHROMIUM and DRIVER):
        pytest.fail("needs Debian's chromium and chromium-driver: run `make ui-deps`")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900"):
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    return webdriver.Chrome(service=Service(DRIVER), options=options)
