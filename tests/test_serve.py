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
import upstep
from upstep.model import save_model

pytest.importorskip("starlette", reason="upstep serve needs Starlette and uvicorn: pip install 'upstep[serve]'")
from upstep.web.testing import (call, find_chromium, headless_chromium, start_server, stop_server,  # noqa: E402
                                upscale_in_page, wait_job)

MAX_PIXELS = 100_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model(make_tiny_model(), tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def strength_dir(tmp_path_factory):
    """A tiny x4 model with its fidelity end (another tiny model of the same architecture)."""
    from upstep.strength import write_fidelity

    folder = save_model(make_tiny_model(seed=1), tmp_path_factory.mktemp("serve") / "tiny_strength")
    write_fidelity(folder, make_tiny_model(seed=2), source="test")
    return folder


@pytest.fixture(scope="module")
def server(model_dir, strength_dir):
    proc, url = start_server("--model", str(model_dir), "--model", str(strength_dir), "--device", "cpu",
                             "--max-upload-mb", "0.05", "--max-pixels", str(MAX_PIXELS))
    yield url
    stop_server(proc)


def png_bytes(size=(20, 16), mode="RGB"):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


def upload(server, data, name, model, headers=None, **asked):
    q = urllib.parse.urlencode({"name": name, "model": model, **asked})
    return call(f"{server}/api/jobs?{q}", data, headers=headers)


BAD = {  # case: (the upload, the status and words of its answer); the server's limit is 0.05 MB
    "corrupt": (lambda: b"garbage" * 20, 400, "not an image"),
    "truncated": (lambda: png_bytes()[: len(png_bytes()) // 2], 400, "truncated"),
    "empty": (lambda: b"", 400, "empty upload"),
    "too_many_bytes": (lambda: os.urandom(60_000), 413, "upload limit"),
    "bomb": (lambda: bomb_png(), 400, "decompression-bomb guard"),
}


def gradient_png(size) -> bytes:
    buf = io.BytesIO()
    Image.linear_gradient("L").resize(size).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def bomb_png() -> bytes:
    """A few hundred bytes that decode to 4 million pixels."""
    buf = io.BytesIO()
    Image.new("L", (2000, 2000)).save(buf, format="PNG")
    assert len(buf.getvalue()) < 20_000
    return buf.getvalue()


def test_models_offered_are_shipped_plus_given_folders(server, model_dir, strength_dir):
    _, info = call(f"{server}/api/models")
    ids = {m["id"]: m["scale"] for m in info["models"]}
    shipped = {m["name"]: m["scale"] for m in upstep.api.shipped_models()}
    from upstep.paths import package_weights_dir
    from upstep.strength import fidelity_weights_path

    with_fidelity_end = {n for n in shipped if fidelity_weights_path(package_weights_dir() / n) is not None}
    assert "default-x4" in with_fidelity_end   # it ships its strength's S = 0 end
    assert {m["id"] for m in info["models"] if m["strength"]} == {str(strength_dir), *with_fidelity_end}
    assert "default-x4" in shipped
    assert ids == {**shipped, str(model_dir): 4, str(strength_dir): 4}
    assert info["limits"]["retention"] == "finished results are kept 10 min after they finish, and only the 16 most recent"


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
    # the model's own output (same model, settings and seed through the Python API), not a resize
    served = np.asarray(Image.open(io.BytesIO(result)), dtype=np.float64)
    lr = Image.open(io.BytesIO(png_bytes(mode="L")))
    api = np.asarray(upstep.load(model_dir, device="cpu", dtype="float32", tile=128, overlap=16).upscale(lr, seed=0),
                     dtype=np.float64)
    bicubic = np.asarray(lr.resize((80, 64), Image.BICUBIC), dtype=np.float64)
    assert np.abs(served - api).max() <= 1
    assert np.abs(served - bicubic).mean() > 5


def served_and_api(server, folder, lr_png: bytes, model=None, **asked):
    """(served result, ``upstep.load(folder).upscale`` with what the server was asked, as arrays)."""
    status, body = upload(server, lr_png, "x.png", model or str(folder), **{k: str(v) for k, v in asked.items()})
    assert status == 200, body
    st = wait_job(server, body["id"])
    assert st["state"] == "done", st
    served = np.asarray(Image.open(io.BytesIO(call(f"{server}/api/jobs/{body['id']}/result.png")[1])), dtype=np.float64)
    up = upstep.load(folder, device="cpu", dtype="float32", tile=128, overlap=16)
    kw = {"out_size": tuple(st["out_size"]), "strength": st["options"]["strength"]}
    api = np.asarray(up.upscale(Image.open(io.BytesIO(lr_png)), seed=0, **kw), dtype=np.float64)
    return st, served, api


def test_any_output_size_and_strength_as_the_api_gives_them(server, model_dir, strength_dir):
    lr = png_bytes((20, 16))
    for asked, want in (({"scale": 3}, [60, 48]), ({"scale": 1.5}, [30, 24]), ({"width": 50}, [50, 40]),
                        ({"height": 40}, [50, 40]), ({"width": 33, "height": 61}, [33, 61])):
        st, served, api = served_and_api(server, model_dir, lr, **asked)
        assert st["out_size"] == want and np.abs(served - api).max() <= 1, (asked, st)
    half, served, api = served_and_api(server, strength_dir, lr, strength=0.5)
    assert half["options"]["strength"] == 0.5 and np.abs(served - api).max() <= 1
    one, full, _ = served_and_api(server, strength_dir, lr, strength=1)
    assert np.abs(served - full).mean() > 1  # the slider changes the result
    assert one["options"]["strength"] == 1.0   # 1 is the model's own weights, not its default (auto for default-x4)
    auto, _, _ = served_and_api(server, upstep.api.resolve_model("default-x4"), lr, model="auto", scale=3)
    assert auto["model"] == "default-x4" and auto["out_size"] == [60, 48]  # smallest shipped scale >= 3
    # the job says what strength it ran at: as asked, or what auto picked (default-x4's default)
    from upstep.io import loaded_from_pil, to_model_rgb

    assert half["strength_used"] == 0.5 and one["strength_used"] == 1.0
    dx4 = upstep.load("default-x4", device="cpu", dtype="float32")
    picked = dx4.resolve_strength(None, to_model_rgb(loaded_from_pil(Image.open(io.BytesIO(lr))))[None])
    assert auto["options"]["strength"] is None and auto["strength_used"] == (1.0 if picked is None else picked)
    for asked, words in (({"strength": 0.5}, "no strength control"), ({"strength": 2}, "between 0"),
                         ({"scale": 9}, "from 1 to 8"), ({"scale": "x"}, "must be a number"),
                         ({"scale": 2, "width": 40}, "not both")):
        status, body = upload(server, lr, "x.png", str(model_dir), **asked)
        assert status == 400 and words in body["error"], (asked, body)


@pytest.mark.parametrize("case", [*BAD, "unknown_model"])
def test_bad_uploads_get_a_readable_error(server, model_dir, case):
    data, want, words = BAD[case] if case in BAD else (png_bytes, 400, "unknown model")
    status, body = upload(server, data(), "photo.png", "no-such-model" if case == "unknown_model" else str(model_dir))
    assert status == want and words in body["error"], body
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


GATED = os.path.join(os.path.dirname(__file__), "gated_serve.py")
LOAD_RSS_BOUND_MB = 80  # the server's peak resident memory over the load beyond its peak in one job (measured: 32)


def test_under_load_no_job_is_lost_and_503_comes_exactly_when_the_queue_is_full(model_dir, tmp_path):
    """Localhost, bounded (about 20 s on 2 cores). A gate file holds the running job so that the
    queue fills on purpose: max 4 jobs, 512 KB decoded (16 bytes a pixel), 0.05 MB uploads.
    1. bytes: 150x150 (352 KB decoded) and 96x72 (108 KB) fit; one more 96x72 is 503 with 2 jobs;
    2. jobs: 12 valid + 5 bad uploads at once: exactly 4 valid accepted, the other 8 answered 503
       + Retry-After naming the 4 jobs; bad ones never accepted; the queue takes work again once
       it has drained;
    3. the gate open: 24 valid + 5 bad uploads at once, clients retry on 503 until accepted.
    Every request is answered; every accepted job finishes (no 404 on the way: none is lost);
    the server's peak resident memory exceeds its peak during one job on the largest image by less
    than LOAD_RSS_BOUND_MB."""
    from concurrent.futures import ThreadPoolExecutor

    from upstep.web.testing import memory_mb, reset_peak_memory

    gate = tmp_path / "gate"
    limits = {"max_jobs": 4, "max_queue_bytes": 512 * 1024, "max_upload_bytes": 52_428, "max_pixels": MAX_PIXELS,
              "keep_results": 64}  # bodies being received: at most 4 x 52 KB
    proc, url = start_server(gate, json.dumps(limits), model_dir, script=GATED)
    model = str(model_dir)
    small, big = png_bytes((96, 72)), gradient_png((150, 150))

    def send(item):
        data, name = item
        headers = {}
        return (*upload(url, data, name, model, headers=headers), headers.get("retry-after"))

    def finish(ids):
        gate.touch()
        return [wait_job(url, i) for i in ids]

    try:
        gate.touch()
        warm = finish([upload(url, big, "warm.png", model)[1]["id"]])  # the model loaded, its working memory used
        assert warm[0]["state"] == "done"
        base = memory_mb(proc.pid)["peak"]  # with the working memory of a job on the largest image
        reset_peak_memory(proc.pid)

        gate.unlink()  # 1. the queue's decoded bytes
        first = [send((big, "big.png")), send((small, "s1.png"))]
        assert [r[0] for r in first] == [200, 200], first
        status, body, retry = send((small, "s2.png"))
        assert status == 503 and "decode to 460 KB and this one to 108 KB, over the queue's 512 KB" in body["error"], body
        assert int(retry) >= 1
        finish([r[1]["id"] for r in first])

        gate.unlink()  # 2. the queue's jobs
        bad = [(make(), f"bad_{case}.png") for case, (make, _, _) in BAD.items()]
        good = [(png_bytes((48, 36)), f"good{i}.png") for i in range(12)]  # 12 x 5 KB in flight
        with ThreadPoolExecutor(len(good) + len(bad)) as pool:
            answers = list(pool.map(send, good + bad))
        got_good, got_bad = answers[: len(good)], answers[len(good):]
        accepted = [b["id"] for st, b, _ in got_good if st == 200]
        assert len(accepted) == 4, [a[:2] for a in got_good]
        for st, b, retry in got_good:
            assert st == 200 or (st == 503 and "4 jobs are queued or running" in b["error"] and int(retry) >= 1), b
        for (st, b, _), (_, want, words) in zip(got_bad, BAD.values()):
            assert (st, words) == (want, words) and words in b["error"] or st == 503, b
        for i in accepted:  # held, not lost
            assert call(f"{url}/api/jobs/{i}")[1]["state"] in ("queued", "running")
        assert all(st["state"] == "done" for st in finish(accepted))
        assert send((small, "after.png"))[0] == 200  # room again once the queue has drained

        def until_accepted(item):  # 3. a real client: retry on 503
            deadline = time.monotonic() + 40
            while True:
                st, b, _ = send(item)
                if st != 503 or time.monotonic() > deadline:
                    return st, b
                time.sleep(0.05)

        good = [(png_bytes((64 + i, 48)), f"load{i}.png") for i in range(24)]
        with ThreadPoolExecutor(len(good) + len(bad)) as pool:
            answers = list(pool.map(until_accepted, good + bad))
        assert all(st == 200 for st, _ in answers[: len(good)]), answers[: len(good)]
        assert [st for st, _ in answers[len(good):]] == [want for _, want, _ in BAD.values()]
        done = [wait_job(url, b["id"]) for _, b in answers[: len(good)]]
        assert [d["out_size"] for d in done] == [[4 * (64 + i), 192] for i in range(24)]

        grown = memory_mb(proc.pid)["peak"] - base
        assert grown < LOAD_RSS_BOUND_MB, f"peak resident memory grew by {grown:.0f} MB"
    finally:
        stop_server(proc)


def test_queued_and_running_jobs_are_never_dropped_finished_ones_by_count_and_age(model_dir, tmp_path):
    """keep 2 results for 3 s: 4 jobs held past 3 s by the gate are all kept; once finished, the
    2 most recent are kept and the others answer 410 with the rule; 3 s later, none."""
    gate = tmp_path / "gate"
    limits = {"max_jobs": 8, "keep_results": 2, "keep_seconds": 3.0, "max_pixels": MAX_PIXELS}
    proc, url = start_server(gate, json.dumps(limits), model_dir, script=GATED)
    try:
        ids = [upload(url, png_bytes((24, 20)), f"j{i}.png", str(model_dir))[1]["id"] for i in range(4)]
        time.sleep(3.5)
        held = [call(f"{url}/api/jobs/{i}") for i in ids]
        assert [(st, b.get("state")) for st, b in held] == [(200, "running")] + [(200, "queued")] * 3, held
        assert [b.get("ahead") for _, b in held] == [None, 1, 2, 3]
        gate.touch()
        assert wait_job(url, ids[-1])["kept_for_seconds"] > 0
        answers = [call(f"{url}/api/jobs/{i}") for i in ids]
        assert [a[0] for a in answers] == [410, 410, 200, 200]
        assert "kept 3 s after they finish, and only the 2 most recent" in answers[0][1]["error"]
        assert "kept 3 s after they finish, and only the 2 most recent" in answers[3][1]["retention"]
        time.sleep(3.2)
        assert [call(f"{url}/api/jobs/{i}")[0] for i in ids] == [410] * 4
        assert call(f"{url}/api/jobs/{'0' * 32}")[0] == 404
    finally:
        stop_server(proc)


def _need_chromium():
    browser, driver = find_chromium()
    if browser and driver:
        return
    missing = " and ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing} is missing: .ci/run installs chromium and chromium-driver")
    pytest.skip(f"{missing} not installed (Debian: apt-get install chromium chromium-driver); "
                "CI installs them and runs this test")


def test_in_a_real_browser(server, model_dir, strength_dir, tmp_path):
    _need_chromium()
    pytest.importorskip("selenium", reason="the browser test needs selenium (pip install 'upstep[dev]')")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

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

        # the output size and strength choices reach the server
        assert upscale_in_page(driver, server, good, model=str(model_dir), settings={"width": 50}) == ("done", (50, 38))
        assert upscale_in_page(driver, server, good, model=str(strength_dir), settings={"scale": 3, "strength": 50}) \
            == ("done", (72, 54))
        assert "at strength 0.50" in driver.find_element(By.ID, "info").text
        driver.get(server)
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#model option"))
        Select(driver.find_element(By.ID, "model")).select_by_value(str(model_dir))
        assert not driver.find_element(By.ID, "strength-row").is_displayed()  # no fidelity end: no slider
    finally:
        driver.quit()


def test_in_a_real_browser_with_a_token_and_a_full_queue(model_dir, tmp_path):
    """Without the token the page says how to get it (the API answered 401); with the address the
    server printed it works; a full queue's 503 is shown to the user."""
    _need_chromium()
    pytest.importorskip("selenium", reason="the browser test needs selenium (pip install 'upstep[dev]')")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    good = tmp_path / "small.png"
    good.write_bytes(png_bytes((24, 18)))
    driver = headless_chromium()
    proc, url = start_server("--model", str(model_dir), "--device", "cpu", "--token", "tok-123")
    try:
        driver.get(url)
        err = WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "error").text)
        assert "access token" in err and "/?token=" in err
        assert upscale_in_page(driver, f"{url}/?token=tok-123", good, model=str(model_dir)) == ("done", (96, 72))
        assert "token=tok-123" in driver.find_element(By.ID, "download").get_attribute("href")
    finally:
        stop_server(proc)
    gate = tmp_path / "gate"
    proc, url = start_server(gate, json.dumps({"max_jobs": 1}), model_dir, script=GATED)
    try:
        held = upload(url, png_bytes(), "held.png", str(model_dir))[1]["id"]  # the gate holds it: queue full
        state, text = upscale_in_page(driver, url, good, model=str(model_dir))
        assert state == "error" and "the server is busy" in text and "try again in" in text, text
        gate.touch()
        assert wait_job(url, held)["state"] == "done"
    finally:
        stop_server(proc)
        driver.quit()


@pytest.mark.parametrize("p,want", [(0.9, 0.75), (0.1, 1.0)])
def test_a_job_reports_the_strength_auto_picked(monkeypatch, p, want):
    """In-process: default-x4 without a strength runs auto; the job's status says what it picked."""
    import upstep.camera_detect as cd
    from upstep.web.service import Service

    monkeypatch.setattr(cd, "camera_probability", lambda det, lr: p)
    service = Service([], device="cpu")
    job_id = service.submit(png_bytes((20, 16)), "x.png", "default-x4")
    for _ in range(600):
        st = service.job_status(job_id)
        if st["state"] in ("done", "error"):
            break
        time.sleep(0.05)
    assert st["state"] == "done", st
    assert st["options"]["strength"] is None and st["strength_used"] == want
