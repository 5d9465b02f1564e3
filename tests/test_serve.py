"""`upstep serve`: the HTTP API, and the page in a real (headless) Chromium."""
import io
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image

from conftest import make_tiny_model
from upstep.model import save_model

pytest.importorskip("starlette", reason="upstep serve needs Starlette and uvicorn: pip install 'upstep[serve]'")
from upstep.web.testing import find_chromium, headless_chromium, start_server, stop_server, upscale_in_page  # noqa: E402

MAX_PIXELS = 100_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model(make_tiny_model(), tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def server(model_dir):
    proc, url = start_server("--model", str(model_dir), "--device", "cpu", "--max-upload-mb", "0.05",
                             "--max-pixels", str(MAX_PIXELS))
    yield url
    stop_server(proc)


def png_bytes(size=(20, 16), mode="RGB"):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def call(url, data=None, token=None, headers=None):
    """(status, body) for GET or POST; JSON bodies decoded. ``headers``: a dict to fill with the
    response's headers."""
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, body, got = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, body, got = e.code, e.read(), e.headers
    if headers is not None:
        headers.update(got)
    return status, json.loads(body) if "json" in got.get("content-type", "") else body


def upload(server, data, name, model):
    q = urllib.parse.urlencode({"name": name, "model": model})
    return call(f"{server}/api/jobs?{q}", data)


def wait_job(server, job_id, timeout=60, token=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, st = call(f"{server}/api/jobs/{job_id}", token=token)
        assert status == 200, (job_id, status, st)  # an accepted job is never lost
        if st["state"] in ("done", "error"):
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


def test_models_offered_are_shipped_plus_given_folders(server, model_dir):
    _, info = call(f"{server}/api/models")
    ids = {m["id"]: m["scale"] for m in info["models"]}
    import upstep

    shipped = {m["name"]: m["scale"] for m in upstep.api.shipped_models()}
    assert "default-x4" in shipped
    assert ids == {**shipped, str(model_dir): 4}


def test_upload_is_upscaled_with_progress_and_both_images_served(server, model_dir):
    status, body = upload(server, png_bytes(mode="L"), "gray.png", str(model_dir))
    assert status == 200, body
    st = wait_job(server, body["id"])
    assert st["state"] == "done" and st["done"] == st["total"] >= 1
    assert st["size"] == [20, 16] and st["out_size"] == [80, 64] and st["download_name"] == "gray_upscaled.png"
    _, result = call(f"{server}/api/jobs/{body['id']}/result.png")
    _, before = call(f"{server}/api/jobs/{body['id']}/input.png")
    assert Image.open(io.BytesIO(result)).size == (80, 64)
    assert Image.open(io.BytesIO(result)).mode == "L"  # the kind of image is kept, as in the CLI
    assert Image.open(io.BytesIO(before)).size == (20, 16)


@pytest.mark.parametrize("case", ["corrupt", "truncated", "empty", "too_many_bytes", "bomb", "unknown_model"])
def test_bad_uploads_get_a_readable_error(server, model_dir, case):
    data, name, model = png_bytes(), "photo.png", str(model_dir)
    if case == "corrupt":
        data = b"garbage" * 20
    elif case == "truncated":
        data = data[: len(data) // 2]
    elif case == "empty":
        data = b""
    elif case == "too_many_bytes":
        data = os.urandom(60_000)  # limit: 0.05 MB
    elif case == "bomb":  # a few hundred bytes that decode to 4 million pixels
        buf = io.BytesIO()
        Image.new("L", (2000, 2000)).save(buf, format="PNG")
        data = buf.getvalue()
        assert len(data) < 20_000
    else:
        model = "no-such-model"
    status, body = upload(server, data, name, model)
    want = {"corrupt": (400, "not an image"), "truncated": (400, "truncated"), "empty": (400, "empty upload"),
            "too_many_bytes": (413, "upload limit"), "bomb": (400, "decompression-bomb guard"),
            "unknown_model": (400, "unknown model")}[case]
    assert status == want[0] and want[1] in body["error"], body
    if case != "unknown_model":
        assert body["error"].startswith("photo.png: ") and "/tmp" not in body["error"]


def test_listens_on_localhost_unless_told_otherwise():
    from upstep.cli import build_parser
    from upstep.web import is_loopback

    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.20", "example.com", "localhost.example.com"]))


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20"])
def test_refuses_a_network_address_without_a_token(host):
    """One line on stderr, exit code 2, before any model is loaded or port bound."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "upstep.cli", "serve", "--host", host, "--port", "1"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and f"--host {host}" in r.stderr and "--token" in r.stderr, r.stderr


def test_with_a_token_every_api_call_needs_it(model_dir):
    token = "s3cret-Token"
    proc, url = start_server("--model", str(model_dir), "--device", "cpu", "--token", token)
    try:
        assert call(f"{url}/")[0] == 200  # the page holds nothing; it reads the token from its address
        for path in ("/api/models", "/api/jobs/0123"):
            for given in ("", "?token=wrong", f"?token={token[:-1]}"):
                status, body = call(f"{url}{path}{given}")
                assert status == 401 and "/?token=" in body["error"], (path, given, status, body)
        q = urllib.parse.urlencode({"name": "a.png", "model": str(model_dir)})
        assert call(f"{url}/api/jobs?{q}", png_bytes())[0] == 401
        assert call(f"{url}/api/jobs?{q}", png_bytes(), token="wrong")[0] == 401

        assert call(f"{url}/api/models", token=token)[0] == 200  # Authorization: Bearer
        status, body = call(f"{url}/api/jobs?{q}", png_bytes(), token=token)
        assert status == 200, body
        st = wait_job(url, body["id"], token=token)
        assert st["state"] == "done"
        result = f"{url}/api/jobs/{body['id']}/result.png"
        assert call(result)[0] == 401
        assert call(f"{result}?token={token}")[0] == 200  # what <img src> and the download link use
    finally:
        stop_server(proc)


def test_page_is_self_contained(server):
    req = urllib.request.urlopen(f"{server}/", timeout=10)
    html = req.read().decode()
    assert "default-src 'self'" in req.headers["Content-Security-Policy"]
    assert "http://" not in html and "https://" not in html and "//cdn" not in html


def _need_chromium():
    browser, driver = find_chromium()
    if browser and driver:
        return
    missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing} is missing: .ci/run installs chromium and chromium-driver")
    pytest.skip(f"{missing} not installed (Debian: apt-get install chromium chromium-driver); "
                "CI installs them and runs this test")


def test_in_a_real_browser(server, model_dir, tmp_path):
    _need_chromium()
    pytest.importorskip("selenium", reason="the browser test needs selenium (pip install 'upstep[dev]')")
    from selenium.webdriver.common.by import By

    good, bad = tmp_path / "small.png", tmp_path / "broken.png"
    good.write_bytes(png_bytes((24, 18)))
    bad.write_bytes(b"not really a png")
    driver = headless_chromium()
    try:
        assert upscale_in_page(driver, server, good, model=str(model_dir)) == ("done", (96, 72))
        link = driver.find_element(By.ID, "download")
        assert link.get_attribute("download") == "small_upscaled.png"
        assert link.get_attribute("href").endswith("/result.png")
        driver.execute_script("const s = document.getElementById('slider'); s.value = 20;"
                              "s.dispatchEvent(new Event('input'))")
        assert "20%" in driver.find_element(By.ID, "after").value_of_css_property("clip-path")
        driver.save_screenshot(str(tmp_path / "page.png"))

        state, text = upscale_in_page(driver, server, bad, model=str(model_dir))
        assert state == "error" and "broken.png" in text and "not an image" in text
        assert not driver.find_element(By.ID, "error").get_attribute("textContent").count("/tmp")
    finally:
        driver.quit()
