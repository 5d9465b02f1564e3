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


def start_server(*args: str, timeout: float = 120.0, script: str | Path | None = None) -> tuple[subprocess.Popen, str]:
    """``upstep serve ARGS`` (or ``python SCRIPT --port PORT ARGS``) on a free localhost port;
    returns (process, base URL) once it answers."""
    import upstep

    port = free_port()
    command = [str(script)] if script else ["-m", "upstep.cli", "serve"]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    src = str(Path(upstep.__file__).resolve().parents[1])  # this checkout, also when run from a worktree
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.Popen([sys.executable, *command, "--port", str(port), *map(str, args)],
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


def call(url: str, data: bytes | None = None, token: str | None = None, headers: dict | None = None):
    """(status, body) of a GET, or of a POST of ``data``; JSON bodies decoded. ``headers``: a dict
    to fill with the response's headers (names in lower case)."""
    import json

    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, body, got = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, body, got = e.code, e.read(), e.headers
    if headers is not None:
        headers.update((k.lower(), v) for k, v in got.items())
    return status, json.loads(body) if "json" in got.get("content-type", "") else body


def wait_job(url: str, job_id: str, timeout: float = 60.0, token: str | None = None) -> dict:
    """Poll a job until it is done or failed; its last status. Fails if the job is ever not found
    (an accepted job must never be lost)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, st = call(f"{url}/api/jobs/{job_id}", token=token)
        if status != 200:
            raise AssertionError(f"accepted job {job_id} answered {status}: {st}")
        if st["state"] in ("done", "error"):
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout:.0f} s")


def memory_mb(pid: int) -> dict:
    """``{"rss", "peak"}`` of a process in MB (Linux: VmRSS and VmHWM of /proc/PID/status)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {k: int(fields[v].split()[0]) / 1024 for k, v in (("rss", "VmRSS"), ("peak", "VmHWM"))}


def reset_peak_memory(pid: int) -> None:
    """Start a process's VmHWM again from its current resident size (Linux >= 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


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


def upscale_in_page(driver, url: str, image: str | Path, model: str | None = None, timeout: float = 120.0,
                    settings: dict | None = None):
    """Open the app, pick ``image`` (and ``model``), set the inputs named in ``settings`` (element
    id -> value: ``scale``, ``width``, ``height``, ``strength`` 0-100), press Upscale; wait for
    the result or the error message. Returns ``("done", (w, h))`` of the shown result or
    ``("error", text)``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
    if model is not None:
        Select(driver.find_element(By.ID, "model")).select_by_value(model)
    for key, value in (settings or {}).items():
        driver.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                              "e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change'))",
                              key, str(value))
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
