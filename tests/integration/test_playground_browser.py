"""The playground page, driven in a real headless Chromium against a real server.

Needs Debian's `chromium` + `chromium-driver` (.ci/run installs them) and selenium; skipped only
where they are missing. The server serves the bundled demo checkpoint, so answers are real.
Regenerate the committed screenshots: BOXGUARD_UPDATE_SCREENSHOTS=1 python -m pytest -k playground
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

pytest.importorskip("transformers")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)

DOCS = Path(__file__).resolve().parents[2] / "docs"
DESKTOP = (1280, 800)
PHONE = (390, 844)
API_KEY = "playground-test-key"
WAIT_S = 30


def _serve(**overrides: Any) -> Iterator[str]:
    from boxguard.server.app import create_app
    from boxguard.server.settings import Settings
    from support import serve_in_thread

    with serve_in_thread(create_app(Settings(**overrides))) as url:
        yield url


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The bundled demo checkpoint behind an open server."""
    yield from _serve()


@pytest.fixture(scope="module")
def keyed_url(server_url: str) -> Iterator[str]:
    """A second server that requires an API key (starts in well under a second after the first)."""
    yield from _serve(api_keys=[API_KEY])


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield browser
    browser.quit()


@pytest.fixture
def page(driver: WebDriver) -> Iterator[WebDriver]:
    """The browser; after each test, no script error may have reached its console."""
    driver.get_log("browser")  # drop what earlier tests left
    yield driver
    errors = [
        entry["message"]
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
        # The 400/401 answers the tests provoke are logged as failed loads; they are expected.
        and "Failed to load resource" not in entry["message"]
    ]
    assert not errors, errors


def open_page(driver: WebDriver, url: str, viewport: tuple[int, int] = DESKTOP) -> None:
    """Load the page at an exact viewport size and wait until it knows the server."""
    width, height = viewport
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": viewport == PHONE},
    )
    driver.get(url)
    wait(driver).until(lambda d: "ready" in _classes(d, "server-state"))
    wait(driver).until(lambda d: d.find_elements(By.CSS_SELECTOR, "[data-sample]"))


def wait(driver: WebDriver) -> WebDriverWait:
    return WebDriverWait(driver, WAIT_S)


def _classes(driver: WebDriver, element_id: str) -> list[str]:
    return (driver.find_element(By.ID, element_id).get_attribute("class") or "").split()


def pick_sample(driver: WebDriver, name: str) -> None:
    """Click a sample scene and wait until it fills the expression."""
    driver.find_element(By.CSS_SELECTOR, f'[data-sample="{name}"]').click()
    wait(driver).until(lambda d: d.find_element(By.ID, "expression").get_attribute("value"))


def submit_with_enter(driver: WebDriver) -> str:
    """Press Enter in the expression field; returns the outcome class of the status line."""
    driver.find_element(By.ID, "expression").send_keys(Keys.ENTER)
    return wait_outcome(driver)


def wait_outcome(driver: WebDriver) -> str:
    outcomes = {"accepted", "abstained", "error"}
    wait(driver).until(lambda d: outcomes & set(_classes(d, "status")))
    return (outcomes & set(_classes(driver, "status"))).pop()


def drawn_boxes(driver: WebDriver) -> list[dict[str, Any]]:
    """Each drawn box: its style and its place in image pixels, measured on screen."""
    script = """
      const img = document.getElementById('preview').getBoundingClientRect();
      const scale = document.getElementById('preview').naturalWidth / img.width;
      return Array.from(document.querySelectorAll('#boxes .box')).map((box) => {
        const r = box.getBoundingClientRect();
        return {kind: box.classList.contains('candidate') ? 'candidate' : 'verified',
                border: getComputedStyle(box).borderTopStyle,
                bbox: [(r.left - img.left) * scale, (r.top - img.top) * scale,
                       (r.right - img.left) * scale, (r.bottom - img.top) * scale]};
      });
    """
    return driver.execute_script(script)  # type: ignore[no-any-return]


def table_rows(driver: WebDriver, table_id: str) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def screenshot(driver: WebDriver, name: str, tmp_path: Path) -> Path:
    """Save a screenshot: into docs/ when regenerating them, else next to the test."""
    folder = DOCS if os.environ.get("BOXGUARD_UPDATE_SCREENSHOTS") == "1" else tmp_path
    path = folder / name
    assert driver.save_screenshot(str(path))
    return path


def test_page_grounds_a_sample_scene_and_shows_boxes_checks_and_code(
    page: WebDriver, server_url: str, tmp_path: Path
) -> None:
    open_page(page, server_url + "/")
    state = page.find_element(By.ID, "server-state").text
    assert "boxguard-demo-shapes" in state and "transformers" in state
    pick_sample(page, "one-circle")
    # A lone large shape is what the bundled checkpoint grounds and accepts (greedy: every time).
    assert submit_with_enter(page) == "accepted"

    (box,) = drawn_boxes(page)
    assert box["kind"] == "verified" and box["border"] == "solid"
    ((_, kind, label, confidence, bbox_text),) = table_rows(page, "boxes-table")
    assert (kind, label) == ("verified", "red circle") and float(confidence) > 0
    bbox = json.loads(bbox_text)
    assert box["bbox"] == pytest.approx(bbox, abs=2.5)  # drawn at true scale, within a pixel
    checks = {row[0]: row[1] for row in table_rows(page, "checks-table")}
    assert {"format", "geometry", "label_match", "confidence"} <= set(checks)
    assert checks["label_match"] == checks["confidence"] == "passed"
    # No think trace was asked for: that check did not run, and the page says so.
    assert checks["think_consistency"] == "not run"
    assert set(checks.values()) == {"passed", "not run"}
    timings = page.find_element(By.ID, "timings").text
    assert "generate" in timings and "round trip" in timings
    raw = page.find_element(By.ID, "raw-section")
    assert raw.get_attribute("open") is None and "bbox_2d" in raw.get_attribute("textContent")
    assert len(page.find_elements(By.CSS_SELECTOR, "#history li")) >= 1
    # Hovering the box highlights its row.
    ActionChains(page).move_to_element(page.find_element(By.CSS_SELECTOR, "#boxes .box")).perform()
    assert "hot" in page.find_element(By.CSS_SELECTOR, "#boxes-table tbody tr").get_attribute(
        "class"
    )
    screenshot(page, "playground.png", tmp_path)

    # Every resource the page loaded came from the server itself.
    loaded = page.execute_script(
        "return performance.getEntriesByType('resource').map((e) => e.name)"
    )
    assert loaded and all(name.startswith(server_url) for name in loaded), loaded

    # The copied curl and SDK code send the same request: run both, get the same box.
    page.find_element(By.ID, "copy-curl").click()
    curl = page.find_element(By.ID, "snippet").text
    assert curl.startswith("curl -so 'one-circle.png'") and "-F 'expression=the red circle'" in curl
    answer = json.loads(_run(["bash", "-c", curl], tmp_path))
    assert answer["status"] == "accepted"
    assert answer["detections"][0]["bbox"] == pytest.approx(bbox, abs=0.05)
    page.find_element(By.ID, "copy-python").click()
    python = page.find_element(By.ID, "snippet").text
    assert 'client.ground(image, "the red circle")' in python
    assert _run([sys.executable, "-c", python], tmp_path).startswith("accepted")


def test_abstained_answer_shows_dashed_candidates_and_its_reasons(
    page: WebDriver, server_url: str, tmp_path: Path
) -> None:
    open_page(page, server_url + "/playground")
    pick_sample(page, "five-shapes")
    page.find_element(By.ID, "think").click()
    # Keyboard on the slider: End = 1.00, one step left = 0.99 (forces an abstention).
    page.find_element(By.ID, "min-confidence").send_keys(Keys.END, Keys.ARROW_LEFT)
    assert page.find_element(By.ID, "min-confidence-value").text == "0.99"
    assert submit_with_enter(page) == "abstained"

    boxes = drawn_boxes(page)
    assert boxes and all(b["kind"] == "candidate" and b["border"] == "dashed" for b in boxes)
    reasons = page.find_elements(By.CSS_SELECTOR, "#reasons li")
    assert [r.get_attribute("data-reason") for r in reasons] == ["confidence"]
    assert "min_confidence 0.99" in reasons[0].text
    assert "Abstained" in page.find_element(By.ID, "status").text
    checks = {row[0]: row[1] for row in table_rows(page, "checks-table")}
    assert checks["confidence"] == "failed"
    assert page.find_element(By.ID, "think-text").text  # the think trace is shown
    page.find_element(By.ID, "copy-curl").click()
    assert "-F think=true" in page.find_element(By.ID, "snippet").text
    assert 'policy={"min_confidence":0.99}' in page.find_element(By.ID, "snippet").text
    page.execute_script("window.scrollTo(0, 0)")
    screenshot(page, "playground-abstained.png", tmp_path)


def test_point_mode_draws_a_crosshair_on_the_point(
    page: WebDriver, server_url: str, tmp_path: Path
) -> None:
    open_page(page, server_url + "/")
    pick_sample(page, "one-circle")
    page.find_element(By.ID, "point").click()
    assert submit_with_enter(page) in ("accepted", "abstained")
    (mark,) = drawn_boxes(page)
    assert page.find_elements(By.CSS_SELECTOR, "#boxes .box.point .hair")
    ((_, _, label, _, point_text),) = table_rows(page, "boxes-table")
    x, y = json.loads(point_text)  # two numbers: a point, in original-image pixels
    x1, y1, x2, y2 = mark["bbox"]
    assert ((x1 + x2) / 2, (y1 + y2) / 2) == pytest.approx((x, y), abs=2.5)
    assert label == "red circle"
    assert page.find_element(By.ID, "coordinates-header").text == "point [x, y] px"
    page.find_element(By.ID, "copy-curl").click()
    assert "-F output=point" in page.find_element(By.ID, "snippet").text
    page.find_element(By.ID, "copy-python").click()
    assert 'client.point(image, "the red circle")' in page.find_element(By.ID, "snippet").text
    screenshot(page, "playground-point.png", tmp_path)


def test_bad_image_shows_the_problem_detail(
    page: WebDriver, server_url: str, tmp_path: Path
) -> None:
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_bytes(b"these are notes, not pixels")
    open_page(page, server_url + "/")
    page.find_element(By.ID, "image-file").send_keys(str(not_an_image))
    page.find_element(By.ID, "expression").send_keys("the red circle")
    assert submit_with_enter(page) == "error"

    expected = httpx.post(
        server_url + "/ground",
        files={"image": ("notes.png", not_an_image.read_bytes(), "image/png")},
        data={"expression": "the red circle"},
    ).json()
    assert page.find_element(By.ID, "problem").is_displayed()
    assert page.find_element(By.ID, "problem-title").text == f"400 {expected['title']}"
    assert page.find_element(By.ID, "problem-detail").text == expected["detail"]
    assert page.find_element(By.ID, "problem-code").text == "invalid_image"
    assert not page.find_elements(By.CSS_SELECTOR, "#boxes .box")
    assert not page.find_element(By.ID, "frame").is_displayed()  # no broken-image icon


def test_with_api_keys_a_request_needs_the_key(page: WebDriver, keyed_url: str) -> None:
    open_page(page, keyed_url + "/")
    key_field = page.find_element(By.ID, "api-key")
    assert key_field.is_displayed() and key_field.get_attribute("value") == ""
    pick_sample(page, "one-circle")
    assert submit_with_enter(page) == "error"
    assert page.find_element(By.ID, "problem-title").text.startswith("401")
    assert page.find_element(By.ID, "problem-code").text == "unauthorized"

    key_field.send_keys(API_KEY)
    outcome = submit_with_enter(page)
    assert outcome != "error"
    assert not page.find_element(By.ID, "problem").is_displayed()
    history = [tag.text for tag in page.find_elements(By.CSS_SELECTOR, "#history .tag")]
    assert history == [outcome, "401 unauthorized"]
    page.find_element(By.ID, "copy-curl").click()
    assert "Authorization: Bearer $BOXGUARD_API_KEY" in page.find_element(By.ID, "snippet").text
    # The history brings an earlier answer back.
    page.find_elements(By.CSS_SELECTOR, "#history button")[1].click()
    wait(page).until(lambda d: "error" in _classes(d, "status"))
    assert page.find_element(By.ID, "problem-code").text == "unauthorized"
    # The key stays in this tab's session storage, not in the page or the code.
    page.refresh()
    wait(page).until(lambda d: d.find_element(By.ID, "api-key").get_attribute("value") == API_KEY)
    assert API_KEY not in page.find_element(By.ID, "snippet").get_attribute("textContent")


def test_keyboard_only_reaches_every_input_and_enter_submits(
    page: WebDriver, server_url: str
) -> None:
    open_page(page, server_url + "/")
    focused: list[str] = []
    keys = ActionChains(page)
    for _ in range(12):
        keys.send_keys(Keys.TAB).perform()
        active = page.switch_to.active_element
        focused.append(active.get_attribute("id") or active.get_attribute("data-sample") or "")
        if focused[-1] == "one-circle":
            break
    assert focused[:2] == ["image-file", "five-shapes"], focused
    keys.send_keys(Keys.ENTER).perform()  # pick the sample: focus moves to the expression
    wait(page).until(lambda d: d.switch_to.active_element.get_attribute("id") == "expression")
    keys.send_keys(Keys.ENTER).perform()
    assert wait_outcome(page) != "error"
    assert page.find_elements(By.CSS_SELECTOR, "#boxes .box")

    # Then the options: think, multiple, point, visual re-check (Space toggles the server's
    # default: on for the bundled checkpoint's policy), k = 2, and Enter.
    visual = page.find_element(By.ID, "visual-check")
    visual_before = visual.is_selected()
    page.find_element(By.ID, "expression").click()
    keys.send_keys(Keys.TAB, Keys.TAB, Keys.TAB, Keys.TAB, Keys.SPACE, Keys.TAB).perform()
    assert page.switch_to.active_element.get_attribute("id") == "sc-k"
    assert visual.is_selected() != visual_before
    keys.send_keys(Keys.BACKSPACE, "2", Keys.ENTER).perform()
    wait(page).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#history li")) == 2)
    checks = {row[0]: row[3] for row in table_rows(page, "checks-table")}
    assert ("disabled by policy" in checks["visual_check"]) == visual_before, checks
    assert "not run" not in checks["self_consistency"], checks


def test_drop_and_paste_take_an_image_and_boxes_follow_exif_orientation(
    page: WebDriver, server_url: str
) -> None:
    # A phone photo: stored sideways with EXIF orientation 6; browser and server both upright it.
    upright = Image.open(
        io.BytesIO(httpx.get(server_url + "/playground/samples/one-circle.png").content)
    )
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    stored = io.BytesIO()
    upright.rotate(90, expand=True).save(stored, "JPEG", quality=95, exif=exif)
    open_page(page, server_url + "/")
    # What the browser hands the page for a dropped file and a pasted image.
    script = """
      const [kind, name, b64, done] = arguments;
      const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
      const data = new DataTransfer();
      data.items.add(new File([bytes], name, {type: 'image/jpeg'}));
      if (kind === 'drop') {
        const zone = document.getElementById('drop-zone');
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true}));
      } else {
        document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data}));
      }
      done();
    """
    encoded = base64.b64encode(stored.getvalue()).decode()
    page.execute_async_script(script, "drop", "photo.jpg", encoded)
    assert page.find_element(By.ID, "image-name").text.startswith("photo.jpg")
    page.find_element(By.ID, "expression").send_keys("the red circle")
    assert submit_with_enter(page) != "error"
    assert page.find_element(By.ID, "image-info").text.startswith("400×300 px")
    box = drawn_boxes(page)[0]
    assert box["bbox"] == pytest.approx(json.loads(table_rows(page, "boxes-table")[0][4]), abs=2.5)

    page.execute_async_script(script, "paste", "clipboard.jpg", encoded)
    assert page.find_element(By.ID, "image-name").text.startswith("pasted.jpeg")


def test_phone_viewport_fits_and_shows_the_result(
    page: WebDriver, server_url: str, tmp_path: Path
) -> None:
    open_page(page, server_url + "/playground", PHONE)
    pick_sample(page, "one-circle")
    assert submit_with_enter(page) != "error"
    width = page.execute_script("return document.documentElement.scrollWidth")
    assert width <= PHONE[0], f"the page scrolls sideways: {width} px"
    status_top = page.execute_script(
        "return document.getElementById('status').getBoundingClientRect().top"
    )
    assert 0 <= status_top < PHONE[1]  # scrolled to the result
    box = drawn_boxes(page)[0]
    image_width = page.execute_script(
        "return document.getElementById('preview').getBoundingClientRect().width"
    )
    assert 0 < image_width <= PHONE[0] and box["bbox"][2] > box["bbox"][0]
    screenshot(page, "playground-phone.png", tmp_path)


def _run(command: list[str], cwd: Path) -> str:
    """Run copied code as a user would; its stdout."""
    out = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    return re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)
