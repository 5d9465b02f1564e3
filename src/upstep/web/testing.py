"""Drive ``upstep serve`` from tests and scripts: start it in a subprocess, open headless Chromium.

Chromium and its driver come from the system (Debian: ``apt-get install chromium chromium-driver``);
selenium is pointed at them, so nothing is downloaded.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> tuple[str | None, str | None]:
    """(browser, driver) paths, None where missing."""
    browser = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    return browser, shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(*args: str, timeout: float = 120.0) -> tuple[subprocess.Popen, str]:
    """``upstep serve ARGS`` on a free localhost port; returns (process, base URL) once it answers."""
    import upstep

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    src = str(Path(upstep.__file__).resolve().parents[1])  # this checkout, also when run from a worktree
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.Popen([sys.executable, "-m", "upstep.cli", "serve", "--port", str(port), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"upstep serve exited with {proc.returncode}: {proc.stdout.read()}")
        try:
            urllib.request.urlopen(f"{url}/api/models", timeout=2).read()
            return proc, url
        except urllib.error.HTTPError:  # it answers (e.g. 401: started with --token)
            return proc, url
        except OSError:
            time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"upstep serve did not answer on {url} within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def headless_chromium(width: int = 1100, height: int = 900):
    """A selenium WebDriver on the system's Chromium (headless, no sandbox: CI runs as root)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = find_chromium()
    if not (browser and driver):
        raise RuntimeError("headless Chromium needs chromium and chromedriver (Debian: apt-get install "
                           "chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def upscale_in_page(driver, url: str, image: str | Path, model: str | None = None, timeout: float = 120.0):
    """Open the app, pick ``image`` (and ``model``), press Upscale; wait for the result or the
    error message. Returns ``("done", (w, h))`` of the shown result or ``("error", text)``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    if model is not None:
        Select(driver.find_element(By.ID, "model")).select_by_value(model)
    driver.find_element(By.ID, "file").send_keys(str(Path(image).resolve()))
    driver.find_element(By.ID, "go").click()

    def outcome(d):
        err = d.find_element(By.ID, "error").text
        if err:
            return "error", err
        done = d.execute_script("const a = document.getElementById('after'); return !document.getElementById"
                                "('result').hidden && a.complete && a.naturalWidth ? [a.naturalWidth, "
                                "a.naturalHeight] : null")
        return ("done", tuple(done)) if done else None

    return wait.until(outcome)
