"""The web page in a real browser (Debian's chromium, headless, driven by Selenium through chromedriver):
no console errors, the pushed repositories listed, search while typing, the savings plot drawn, copy and
delete working, and markup from an annotation shown as text. Screenshots are saved under the test's tmp dir
(and as docs/web-page.png with K3SREG_DOCS_SCREENSHOT=1)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.peers import api
from tests.peers.images import TestLayout
from tests.peers.registry import DockerRegistry, K3sregServer
from tests.peers.skopeo import Skopeo

UPSTREAM = "upstream.test"
EVIL = '"><script>alert("xss")</script><img src=x onerror=alert(1)>'
DOCS_SHOT = Path(__file__).resolve().parents[2] / "docs" / "web-page.png"
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--window-size=1400,1100")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, skopeo: Skopeo, oci_layout: TestLayout
         ) -> Iterator[K3sregServer]:
    """k3sreg (2 workers, a point of the savings plot every second) with pushed images, one artifact whose
    annotation and artifactType carry markup, and an upstream pulled through twice."""
    with DockerRegistry(tmp_path_factory.mktemp("web-upstream")) as upstream:
        skopeo.copy(oci_layout.oci_ref(), f"docker://{upstream.host}/library/nginx:1.27")
        config = {"upstreams": [{"name": UPSTREAM, "url": upstream.url}], "web": {"sampleinterval": "1s"}}
        with K3sregServer(tmp_path_factory.mktemp("web-k3sreg"), workers=2, config=config) as reg:
            for tag in ("1", "1-multi", "1-sig"):
                skopeo.copy(oci_layout.oci_ref(tag), f"docker://{reg.host}/library/demo:{tag}", all=True)
            for repo in ("team/app:v1", "team/app:v2", "tools/debug:0.3", "team/evil:1"):
                skopeo.copy(oci_layout.oci_ref(), f"docker://{reg.host}/{repo}")
            push_evil_artifact(reg)
            for i in range(3):
                skopeo.copy(f"docker://{reg.host}/{UPSTREAM}/library/nginx:1.27", "dir:" + str(
                    tmp_path_factory.mktemp(f"pull{i}")))
                time.sleep(1.2)
            yield reg


def push_evil_artifact(reg: K3sregServer) -> None:
    """An artifact referring to team/evil:1 whose artifactType and annotation hold markup."""
    image = api.manifest(reg.url, "team/evil", "1")
    doc = json.loads(image.body)
    artifact = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "artifactType": f"application/vnd.example{EVIL}", "config": doc["config"], "layers": [],
                "subject": {"mediaType": doc["mediaType"], "digest": image.headers["docker-content-digest"],
                            "size": len(image.body)},
                "annotations": {"org.example.note": EVIL}}
    resp = api.request("PUT", f"{reg.url}/v2/team/evil/manifests/sig", json.dumps(artifact).encode(),
                       {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert resp.status == 201, resp.body


@pytest.fixture
def browser(tmp_path: Path, site: K3sregServer) -> Iterator[webdriver.Chrome]:
    """Headless chromium with a fresh profile, allowed to write the clipboard of the site."""
    opts = Options()
    opts.binary_location = "/usr/bin/chromium"
    for arg in (*CHROME_ARGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers on the network
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": site.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]


def shown_repositories(driver: webdriver.Chrome) -> list[str]:
    return [str(r.get_attribute("data-repo")) for r in driver.find_elements(By.CSS_SELECTOR, "tr.repo")]


def no_alert(driver: webdriver.Chrome) -> bool:
    try:
        driver.switch_to.alert  # noqa: B018 - raises when there is none
    except NoAlertPresentException:
        return True
    return False


def test_page_lists_searches_and_plots(browser: webdriver.Chrome, site: K3sregServer, tmp_path: Path) -> None:
    """The page loads without console errors, lists every pushed repository, filters them while one types,
    and draws the savings plot with its points."""
    browser.get(f"{site.url}/")
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.repo"))
    assert {"library/demo", "team/app", "team/evil", "tools/debug", f"{UPSTREAM}/library/nginx"} <= set(
        shown_repositories(browser))
    points = browser.find_elements(By.CSS_SELECTOR, f'svg.plot g.series[data-upstream="{UPSTREAM}"] circle.pt')
    assert len(points) >= 2
    upstream_row = browser.find_element(By.CSS_SELECTOR, f'tr[data-upstream="{UPSTREAM}"]').text
    assert "%" in upstream_row
    browser.save_screenshot(str(tmp_path / "web-page.png"))
    if os.environ.get("K3SREG_DOCS_SCREENSHOT"):
        browser.save_screenshot(str(DOCS_SHOT))
    box = browser.find_element(By.ID, "q")
    box.send_keys("team/")
    WebDriverWait(browser, 10).until(lambda d: shown_repositories(d) == ["team/app", "team/evil"])
    assert "q=team" in browser.current_url
    browser.save_screenshot(str(tmp_path / "web-page-search.png"))
    assert console_errors(browser) == []


def test_repository_page_copies_and_escapes(browser: webdriver.Chrome, site: K3sregServer) -> None:
    """A repository page shows an annotation's markup as text (no script runs, no alert), and its copy button
    puts the pull command on the clipboard."""
    browser.get(f"{site.url}/repositories/team/evil")
    row = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-tag="sig"]'))
    assert EVIL in row.text
    assert no_alert(browser)
    assert len(browser.find_elements(By.TAG_NAME, "script")) == 1
    assert len(browser.find_elements(By.CSS_SELECTOR, "main img")) == 0
    button = browser.find_element(By.CSS_SELECTOR, 'tr[data-tag="1"] button.copy')
    button.click()
    WebDriverWait(browser, 5).until(lambda d: button.text == "copied")
    pasted = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0])")
    assert pasted == f"docker pull {site.host}/team/evil:1"
    assert console_errors(browser) == []


def test_delete_from_the_page(browser: webdriver.Chrome, site: K3sregServer) -> None:
    """Deleting a tag from the page (confirmed) removes it from the registry."""
    browser.get(f"{site.url}/repositories/tools/debug")
    button = WebDriverWait(browser, 10).until(
        lambda d: d.find_element(By.CSS_SELECTOR, 'tr[data-tag="0.3"] form.delete button'))
    button.click()
    WebDriverWait(browser, 5).until(lambda d: not no_alert(d))
    browser.switch_to.alert.accept()
    WebDriverWait(browser, 10).until(lambda d: "Tag 0.3 was deleted" in d.page_source)
    assert api.tags(site.url, "tools/debug") == []
    assert console_errors(browser) == []
