"""The review page (/playground/review) in a real headless Chromium against a recording server:
accept the model's box, draw the right one, mark "not in the image"; each decision is stored
beside its record. Needs Debian's chromium + chromium-driver, like the playground's tests."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

webdriver = pytest.importorskip("selenium.webdriver")
from boxguard.records import Record, RecordStore  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webdriver import WebDriver  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)
API_KEY = "review-test-key"
SIZE = (400, 300)


def _abstention(store: RecordStore, expression: str, color: str) -> int:
    """An abstained record with one rejected candidate box."""
    buf = io.BytesIO()
    Image.new("RGB", SIZE, color).save(buf, "PNG")
    candidate = {"bbox": [40.0, 30.0, 200.0, 150.0], "label": "x", "confidence": 0.2}
    return store.add(
        Record(
            request_id="r", model="m", frame="pixels", status="abstained",
            expression=expression, options={}, raw_output="[]", timings={},
            verdict={"status": "abstained", "detections": [], "candidates": [candidate],
                     "reasons": ["confidence"]},
            image_sha256="", image_ext="png", image_width=SIZE[0], image_height=SIZE[1],
            model_width=392, model_height=308,
        ),
        buf.getvalue(),
    )  # fmt: skip


@pytest.fixture(scope="module")
def served(
    tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, int]]]:
    """A keyed server recording into a store that already holds three abstentions."""
    from boxguard.server.app import create_app
    from boxguard.server.settings import Settings
    from support import serve_in_thread

    root = tmp_path_factory.mktemp("review")
    store = RecordStore.open(str(root))
    ids = {name: _abstention(store, f"the {name} box", name) for name in ("red", "green", "blue")}
    store.close()
    settings = Settings(model=str(tiny_checkpoint), record=str(root), api_keys=[API_KEY])
    with serve_in_thread(create_app(settings)) as url:
        yield url, ids


@pytest.fixture(scope="module")
def driver() -> Iterator[WebDriver]:
    """One headless Chromium for the module."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    browser.set_window_size(1280, 900)
    yield browser
    browser.quit()


def _wait(driver: WebDriver) -> WebDriverWait:
    return WebDriverWait(driver, 30)


def _review(url: str, record_id: int) -> dict | None:
    answer = httpx.get(
        f"{url}/v1/records/{record_id}", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    )
    review: dict | None = answer.json()["review"]
    return review


def _open(driver: WebDriver, url: str, record_id: int) -> None:
    """The page with the key typed, then record `record_id` shown."""
    driver.get(url + "/playground/review")
    key = driver.find_element(By.ID, "api-key")
    key.send_keys(API_KEY)
    driver.execute_script("arguments[0].dispatchEvent(new Event('change'))", key)
    button = _wait(driver).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"[data-record='{record_id}']")
    )[0]
    button.click()
    _wait(driver).until(lambda d: d.find_element(By.ID, "absent").is_enabled())


def test_without_the_key_the_page_says_so(driver: WebDriver, served: tuple) -> None:
    url, _ = served
    driver.get(url + "/playground/review")
    _wait(driver).until(lambda d: d.find_element(By.ID, "status").text)
    assert "error" in (driver.find_element(By.ID, "status").get_attribute("class") or "")


def test_accept_draw_and_absent_are_stored(driver: WebDriver, served: tuple) -> None:
    url, ids = served
    _open(driver, url, ids["red"])
    driver.find_element(By.ID, "accept").click()
    _wait(driver).until(lambda d: "Saved" in d.find_element(By.ID, "status").text)
    assert _review(url, ids["red"]) == {"decision": "accept", "boxes": [[40.0, 30.0, 200.0, 150.0]]}

    _open(driver, url, ids["green"])
    canvas = driver.find_element(By.ID, "canvas")
    shown_w = canvas.size["width"]
    scale = shown_w / SIZE[0]
    left, top = -shown_w / 2, -canvas.size["height"] / 2  # offsets are from the centre
    ActionChains(driver).move_to_element_with_offset(
        canvas, int(left + 100 * scale), int(top + 80 * scale)
    ).click_and_hold().move_by_offset(int(100 * scale), int(60 * scale)).release().perform()
    _wait(driver).until(lambda d: d.find_element(By.ID, "save-box").is_enabled())
    driver.find_element(By.ID, "save-box").click()
    _wait(driver).until(lambda d: "Saved" in d.find_element(By.ID, "status").text)
    review = _review(url, ids["green"])
    assert review is not None and review["decision"] == "box"
    x1, y1, x2, y2 = review["boxes"][0]
    assert abs(x1 - 100) <= 4 and abs(y1 - 80) <= 4 and abs(x2 - 200) <= 4 and abs(y2 - 140) <= 4

    _open(driver, url, ids["blue"])
    driver.find_element(By.ID, "absent").click()
    _wait(driver).until(lambda d: "Saved" in d.find_element(By.ID, "status").text)
    assert _review(url, ids["blue"]) == {"decision": "absent", "boxes": []}
    marks = driver.find_elements(By.CSS_SELECTOR, "#records .done")
    assert len(marks) == 3
    logs = driver.get_log("browser")  # type: ignore[attr-defined]
    errors = [e for e in logs if e["level"] == "SEVERE"]
    assert all("Failed to load resource" in e["message"] for e in errors), errors
