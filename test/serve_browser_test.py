#!/usr/bin/env python3
"""Browser test of the demo page of `groupvit serve` (docs/serve-api.md), the server started by the caller.

usage: serve_browser_test.py BASE_URL IMAGE_PATH SCREENSHOT_DIR

Debian's Chromium headless through Selenium and /usr/bin/chromedriver (never selenium-manager, no
network but BASE_URL). Loads `/`, waits for the model line, uploads IMAGE_PATH through the file
input, labels "cat, grass, 猫", submits and checks against the API's own answer for the same request
(POST /v1/segment with requests): the legend lists exactly the labels present (pixel_share keys but
background), the overlay and the label map shown are the API's pixel for pixel, the tables are sorted,
the group maps are there. Saves SCREENSHOT_DIR/serve-page.png (1280x900) and serve-page-phone.png
(360x740, no horizontal scrolling), then checks a non-image upload shows the server's error and
that mode hf works too. With GROUPVIT_API_KEY set, the server is expected to want that key: the page
must ask for it. Prints one summary line; exits 1 on failure.
Environment: CHROMIUM (default /usr/bin/chromium), CHROMEDRIVER (default /usr/bin/chromedriver).
"""
import base64
import io
import mimetypes
import os
import re
import sys
import tempfile

os.environ["SE_OFFLINE"] = "1"  # selenium-manager must never download anything

import numpy as np
import requests
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

LABELS = os.environ.get("GROUPVIT_BROWSER_LABELS", "cat, grass, 猫")  # the labels typed into the page
TIMEOUT = 120


class Failure(Exception):
    pass


def check(cond, message):
    if not cond:
        raise Failure(message)


def start_browser(width, height):
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--window-size={width},{height}", "--lang=en-US", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")),
                            options=opts)


def api_segment(base, image_path, mode, key):
    data = {"labels": ",".join(l.strip() for l in LABELS.split(",")), "mode": mode,
            "templates": "simple", "groups": "true"}
    if mode == "nvlabs":
        data["bg_thresh"] = "0.95"
    with open(image_path, "rb") as f:
        files = {"image": (os.path.basename(image_path), f.read(),
                           mimetypes.guess_type(image_path)[0] or "application/octet-stream")}
    headers = {"Authorization": "Bearer " + key} if key else {}
    r = requests.post(base + "/v1/segment", data=data, files=files, headers=headers, timeout=TIMEOUT)
    check(r.status_code == 200, f"API POST /v1/segment ({mode}): HTTP {r.status_code} {r.text[:300]}")
    return r.json()


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def submit(driver):
    """Clicks Submit and waits for that run to end; returns the final data-state."""
    run = int(js(driver, "return document.body.dataset.run"))
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, TIMEOUT).until(lambda d: js(
        d, "const b = document.body; return b.dataset.run === arguments[0] && "
           "(b.dataset.state === 'done' || b.dataset.state === 'error')", str(run + 1)),
        f"run {run + 1} still busy after {TIMEOUT} s")
    return js(driver, "return document.body.dataset.state")


def decode_data_url(src, what):
    check(src and src.startswith("data:image/png;base64,"), f"{what}: src is not a PNG data URL: {src[:60]!r}")
    return Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))


def b64_image(b64):
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def check_answer_shown(driver, api, mode):
    """The page shows what the API answers for the same request; returns the legend's labels."""
    state = js(driver, "return document.body.dataset.state")
    check(state == "done", f"{mode}: data-state={state}, #error: {driver.find_element(By.ID, 'error').text!r}")
    status = driver.find_element(By.ID, "status").text
    check(re.fullmatch(r"Done in \d+ ms", status), f"{mode}: #status is {status!r}")
    user_labels = [l.strip() for l in LABELS.split(",")]
    items = driver.find_elements(By.CSS_SELECTOR, "#legend li")
    legend = [li.text for li in items]
    check(legend == [li.get_attribute("data-label") for li in items], f"{mode}: legend text != data-label")
    check(set(legend) <= set(user_labels), f"{mode}: legend {legend} not within the labels {user_labels}")
    present = set(api["pixel_share"]) - {"background"}
    check(set(legend) == present and len(legend) == len(present),
          f"{mode}: legend {legend} but the API's labels present are {sorted(present)}")

    shown = np.asarray(decode_data_url(driver.find_element(By.ID, "overlay").get_attribute("src"), "#overlay"))
    expected = np.asarray(b64_image(api["overlay"]))
    check(shown.shape == expected.shape and np.array_equal(shown, expected),
          f"{mode}: the overlay shown differs from the API's ({shown.shape} vs {expected.shape})")
    lm = decode_data_url(driver.find_element(By.ID, "label-map").get_attribute("src"), "#label-map")
    check(lm.mode == "P" and np.array_equal(np.asarray(lm), np.asarray(b64_image(api["label_map"]))),
          f"{mode}: #label-map is not the API's paletted label map (mode {lm.mode})")
    # every image decoded by the browser at the answer's size
    ids = ["overlay", "label-map"] + [f"group-{i}" for i in range(len(api.get("groups", [])))]
    check(api.get("groups"), f"{mode}: the API answered no group maps to groups=true")
    for i in ids:
        WebDriverWait(driver, 10).until(lambda d: js(d, "const e = document.getElementById(arguments[0]);"
                                                        "return e && e.complete", i), f"#{i} not loaded")
        size = js(driver, "const e = document.getElementById(arguments[0]); return [e.naturalWidth, e.naturalHeight]", i)
        check(size == [api["width"], api["height"]], f"{mode}: #{i} decoded as {size}")

    for table, key in (("pixel-share", "pixel_share"), ("scores", "scores")):
        rows = driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr")
        names = [r.get_attribute("data-label") for r in rows]
        values = [float(r.find_element(By.CSS_SELECTOR, "td.num").text.rstrip("%")) for r in rows]
        check(sorted(names) == sorted(api[key]), f"{mode}: #{table} rows {names} vs the API's {list(api[key])}")
        check(values == sorted(values, reverse=True), f"{mode}: #{table} not sorted descending: {values}")
    return legend


def full_screenshot(driver, path):
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))


def run(base, image_path, shots, driver):
    key = os.environ.get("GROUPVIT_API_KEY", "")
    driver.get(base + "/")
    if key:
        WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "api-key").is_displayed(),
                                        "the page shows no API key input (GROUPVIT_API_KEY is set)")
        driver.find_element(By.ID, "api-key").send_keys(key)
    else:
        WebDriverWait(driver, 30).until(lambda d: js(d, "return document.getElementById('model').dataset.ready"),
                                        "no model line from GET /v1/model (a key needed? set GROUPVIT_API_KEY)")
        model_line = driver.find_element(By.ID, "model").text
        check("device" in model_line, f"model line {model_line!r}")

    driver.find_element(By.ID, "image").send_keys(os.path.abspath(image_path))
    labels = driver.find_element(By.ID, "labels")
    labels.clear()
    labels.send_keys(LABELS)
    if labels.get_attribute("value") != LABELS:  # a driver without that input method: set it directly
        js(driver, "arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'))",
           labels, LABELS)
    check(driver.find_element(By.ID, "groups").is_selected(), "group maps checkbox not checked by default")
    submit(driver)
    legend_nv = check_answer_shown(driver, api_segment(base, image_path, "nvlabs", key), "nvlabs")
    if key:
        check(not driver.find_element(By.ID, "api-key").is_displayed(), "key box still shown after success")
        WebDriverWait(driver, 30).until(lambda d: js(d, "return document.getElementById('model').dataset.ready"),
                                        "no model line after the key was accepted")

    full_screenshot(driver, os.path.join(shots, "serve-page.png"))
    driver.set_window_size(360, 740)
    inner = js(driver, "return window.innerWidth")
    scroll = js(driver, "return document.documentElement.scrollWidth")
    check(scroll <= inner, f"phone: horizontal scrolling (scrollWidth {scroll} > innerWidth {inner})")
    full_screenshot(driver, os.path.join(shots, "serve-page-phone.png"))
    driver.set_window_size(1280, 900)

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("this is not an image\n")
    try:
        driver.find_element(By.ID, "image").send_keys(f.name)
        state = submit(driver)
    finally:
        os.unlink(f.name)
    error = driver.find_element(By.ID, "error")
    check(state == "error", f"non-image: data-state={state}")
    check(error.is_displayed() and error.text.strip(), f"non-image: #error not shown ({error.text!r})")
    check(error.get_attribute("role") == "alert", "#error has no role=alert")
    non_image_error = error.text.strip()

    driver.find_element(By.ID, "image").send_keys(os.path.abspath(image_path))
    Select(driver.find_element(By.ID, "mode")).select_by_value("hf")
    check(not driver.find_element(By.ID, "bg_thresh").is_enabled(), "bg_thresh enabled in hf mode")
    submit(driver)
    check(not driver.find_element(By.ID, "error").is_displayed(), "hf: #error still shown after success")
    legend_hf = check_answer_shown(driver, api_segment(base, image_path, "hf", key), "hf")
    return (f"nvlabs legend {legend_nv}, hf legend {legend_hf}, overlays and label maps identical to the API's, "
            f"phone scrollWidth {scroll} <= {inner}, non-image error {non_image_error!r}")


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    base, image_path, shots = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    os.makedirs(shots, exist_ok=True)
    driver = start_browser(1280, 900)
    try:
        summary = run(base, image_path, shots, driver)
    except Exception as e:  # a Failure or a Selenium timeout: say what, keep the evidence
        try:
            driver.save_screenshot(os.path.join(shots, "serve-page-failure.png"))
            for entry in driver.get_log("browser"):
                print("browser:", entry.get("level"), entry.get("message"), file=sys.stderr)
        except Exception:
            pass
        reason = (getattr(e, "msg", None) or str(e)).strip().splitlines()
        print(f"serve_browser_test: FAIL: {type(e).__name__}: {reason[0] if reason else ''}")
        return 1
    finally:
        driver.quit()
    print(f"serve_browser_test: PASS: {summary}; screenshots in {shots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
