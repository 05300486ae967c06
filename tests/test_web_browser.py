"""The web app end to end in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, driven by Selenium; no browser is downloaded): a volunteer submits a photo
of a known individual and one of a never-seen one, a reviewer logs in, confirms the first with
the keyboard shortcut and records the second as a new individual; the gallery and its audit log
show both. Screenshots of every page go to the test's tmp dir (and to ``$REID_SCREENSHOTS``
when set: that is how docs/web/ was made)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip(
        "Chromium is absent: install Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver; .ci/run does) to run the browser tests.",
        allow_module_level=True,
    )
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from reid.web.app import create_app  # noqa: E402
from reid.web.auth import add_user  # noqa: E402
from reid.web.service import ServeSettings, Service  # noqa: E402

PASSWORD = "correct horse battery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(web_gallery, tmp_path):
    """The app on a free local port with one real worker thread; yields (base url, service)."""
    import uvicorn

    gallery = tmp_path / "gallery"
    shutil.copytree(web_gallery["dir"], gallery)
    sites = tmp_path / "sites.csv"
    sites.write_text("site,latitude,longitude\nUpper pool,35.0,133.0\nFar reach,35.09,133.0\n")
    settings = ServeSettings(gallery_dir=gallery, model=web_gallery["run"], workers=1,
                             device="cpu", sites=sites)  # fmt: skip
    service = Service(settings)
    add_user(service.db, "ana", PASSWORD)
    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(settings, service=service), host="127.0.0.1",
                                        port=port, log_level="warning"))  # fmt: skip
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    yield f"http://127.0.0.1:{port}", service
    srv.should_exit = True
    thread.join(15)


@pytest.fixture()
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--disable-gpu"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def test_volunteer_submits_and_reviewer_confirms_and_creates(server, browser, web_gallery,
                                                             tiny_data, tmp_path):  # fmt: skip
    base, service = server
    shots = tmp_path / "screenshots"
    shots.mkdir()
    keep = os.environ.get("REID_SCREENSHOTS")

    def shot(name: str) -> None:
        browser.save_screenshot(str(shots / f"{name}.png"))
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shots / f"{name}.png", Path(keep) / f"{name}.png")

    def send(photo: Path, **fields: str) -> str:
        browser.get(base + "/")
        browser.find_element(By.ID, "photos").send_keys(str(photo))
        if "site" in fields:
            Select(browser.find_element(By.ID, "site")).select_by_visible_text(fields.pop("site"))
        if "date" in fields:  # a date input's typed format follows the locale: set its value
            browser.execute_script("document.getElementById('date').value = arguments[0]",
                                   fields.pop("date"))  # fmt: skip
        for field, value in fields.items():
            browser.find_element(By.ID, field).send_keys(value)
        shot("1_submit") if "observer" in fields else None
        browser.find_element(By.ID, "send").click()
        link = browser.find_element(By.ID, "receipt-link")
        return link.get_attribute("href")

    known = send(web_gallery["known"], site="Upper pool", observer="Kenji Sato", date="2026-05-30")
    unknown = send(web_gallery["unknown"], latitude="35.0101", longitude="133.0202")
    assert "waiting for identification" in browser.page_source or "review" in browser.page_source

    def status(receipt: str) -> str:
        browser.get(receipt)
        return browser.find_element(By.CSS_SELECTOR, "#receipt td.status").text

    WebDriverWait(browser, 60, poll_frequency=0.5).until(lambda _: "awaiting" in status(unknown))
    assert status(known) == "matched, awaiting review"
    shot("2_receipt")

    browser.get(base + "/review")  # not logged in: the login page
    assert "/login" in browser.current_url
    browser.find_element(By.ID, "name").send_keys("ana")
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    rows = browser.find_elements(By.CSS_SELECTOR, "#queue tr[data-photo]")
    assert len(rows) == 2
    shot("3_queue")

    ids = {p["original_name"]: p["id"] for p in service.db.query("SELECT * FROM photos")}
    browser.get(f"{base}/review/{ids[web_gallery['known'].name]}")
    WebDriverWait(browser, 60).until(
        lambda d: d.execute_script(
            "const i = document.getElementById('sheet');return i.complete && i.naturalWidth > 0"
        )
    )
    assert web_gallery["known_individual"] in browser.find_element(By.ID, "confirm").text
    shot("4_review")
    browser.find_element(By.TAG_NAME, "body").send_keys("c")  # the keyboard shortcut
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "last-action"))
    done = browser.find_element(By.ID, "last-action").text
    assert "confirm as " + web_gallery["known_individual"] in done

    browser.get(f"{base}/review/{ids[web_gallery['unknown'].name]}")
    browser.find_element(By.ID, "individual").send_keys("JGS-web-new")
    browser.find_element(By.ID, "new").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "last-action"))
    assert "new as JGS-web-new" in browser.find_element(By.ID, "last-action").text
    assert browser.find_elements(By.ID, "empty")  # the queue is empty now

    with service.open_gallery() as g:
        counts = {s.id: s.num_images for s in g.individuals()}
        enrolls = [a for a in g.audit_log() if a["action"] == "enroll" and a["user"] == "ana"]
        new_photo = g.images("JGS-web-new")[0]
        known_photo = g.images(web_gallery["known_individual"])[-1]
    assert counts["JGS-web-new"] == 1 and len(enrolls) == 2
    assert new_photo.location == "35.010100, 133.020200"
    assert (known_photo.date, known_photo.location) == ("2026-05-30", "Upper pool")
    assert "confirmed by a reviewer: " + web_gallery["known_individual"] == status(known)
    assert status(unknown) == "recorded as a new individual: JGS-web-new"

    # the same animal turns up 10 km away: the reviewer assigns it, an alert is raised
    who = web_gallery["known_individual"]
    with service.open_gallery() as g:
        enrolled = {im.sha256 for im in g.images(who)}
    other = next(p for p in sorted((tiny_data.parent / "images" / who).glob("*.jpg"))
                 if hashlib.sha256(p.read_bytes()).hexdigest() not in enrolled)  # fmt: skip
    far = send(other, site="Far reach", date="2026-06-14")
    WebDriverWait(browser, 60, poll_frequency=0.5).until(lambda _: "awaiting" in status(far))
    ids = {p["original_name"]: p["id"] for p in service.db.query("SELECT * FROM photos")}
    browser.get(f"{base}/review/{ids[other.name]}")
    browser.find_element(By.ID, "individual").send_keys(who)
    browser.find_element(By.ID, "assign").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.ID, "last-action"))
    browser.get(f"{base}/individuals/{who}")
    assert "Far reach" in browser.find_element(By.ID, "sightings").text
    assert (
        "10.0 km from its nearest earlier sighting"
        in browser.find_element(By.CLASS_NAME, "alert").text
    )
    shot("5_individual")
    browser.get(f"{base}/alerts")
    assert browser.find_element(By.CSS_SELECTOR, "#alerts tr.distance")
    shot("6_alerts")
    assert len(list(shots.glob("*.png"))) == 6
