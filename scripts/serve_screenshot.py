"""Screenshot of `upstep serve` for the README: the bundled sample upscaled by default-x4.

    python scripts/serve_screenshot.py [docs/serve.png]

Starts the server, uploads ``src/upstep/assets/sample.png`` in headless Chromium (Debian's
chromium + chromium-driver), waits for the result and saves the page.
"""
import sys
from pathlib import Path

from upstep.web.testing import headless_chromium, start_server, stop_server, upscale_in_page


def main(out: str = "docs/serve.png") -> None:
    sample = Path(__file__).resolve().parents[1] / "src" / "upstep" / "assets" / "sample.png"
    proc, url = start_server("--device", "cpu")
    driver = headless_chromium(width=760, height=900)
    try:
        upscale_in_page(driver, url, sample, model="default-x4")  # warm-up: the time shown is a warm run
        state, detail = upscale_in_page(driver, url, sample, model="default-x4")
        if state != "done":
            raise SystemExit(f"the page showed an error: {detail}")
        driver.execute_script("const s = document.getElementById('slider'); s.value = 45;"
                              "s.dispatchEvent(new Event('input'))")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the whole page in one shot
                               {"width": 760, "height": height, "deviceScaleFactor": 1, "mobile": False})
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(out)
        print(f"{out}: page with a {detail[0]}x{detail[1]} result")
    finally:
        driver.quit()
        stop_server(proc)


if __name__ == "__main__":
    main(*sys.argv[1:])
