"""The subscriber's web page in a real browser: Debian's chromium, headless, driven by selenium
through chromium-driver, against real services (broker, publishers, subscribers as child
processes). One stack and one browser serve the whole module, to keep it fast.

    broker <- publisher "demo" (cube, grid, table, XSS bait, README.md)
           <- publisher "secret" (tiny)      <- subscriber (open), subscriber --users
    ada: granted "demo" only

A screenshot of each main view is kept in build/screenshots (CATERVA_SCREENSHOTS to move it).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import blosc2
import httpx
import numpy as np
import pytest

from caterva.subscriber.web import image, routes
from tests.conftest import ROOT, Services
from tests.integration.authkit import PASSWORD, make_users, tiny_root, wait_root

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import (  # noqa: E402
    NoAlertPresentException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.expected_conditions import staleness_of  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
SHOTS = Path(os.environ.get("CATERVA_SCREENSHOTS", ROOT / "build" / "screenshots"))
ADA = "ada@lab.org"
RNG = np.random.default_rng(20)
CUBE = RNG.standard_normal((4, 30, 40))
GRID = np.arange(30 * 40, dtype=np.float64).reshape(30, 40)
Y, X = np.mgrid[0:240, 0:360] / 40.0
WAVE = np.sin(X) * np.cos(Y) + X / 6  # a smooth field: what the README's picture shows
FIELDS = [("x", "<i4"), ("y", "<f8"), ("s", "S4")]
TABLE = np.array([(i, i / 7, f"n{i}".encode()) for i in range(25)], dtype=FIELDS)
BAIT = "<script>alert(1)</script>.b2nd"
SCRIPTED = "<img src=x onerror=\"document.title='pwned'\"><script>alert(2)</script>"
README = """# Notes

<script>alert(3)</script>

<img src=x onerror=alert(4)>

[go](javascript:alert(5))
"""


def demo_data(directory: Path) -> Path:
    directory.mkdir()
    cube = blosc2.asarray(
        CUBE, urlpath=str(directory / "cube.b2nd"), mode="w", chunks=(1, 10, 10), blocks=(1, 5, 5)
    )
    cube.vlmeta["note"] = SCRIPTED
    blosc2.asarray(GRID, urlpath=str(directory / "grid.b2nd"), mode="w", chunks=(10, 10))
    blosc2.asarray(TABLE, urlpath=str(directory / "table.b2nd"), mode="w", chunks=(10,))
    blosc2.asarray(WAVE, urlpath=str(directory / "wave.b2nd"), mode="w", chunks=(60, 90))
    bait = directory / BAIT  # a folder "<script>alert(1)<" holding "script>.b2nd"
    bait.parent.mkdir()
    blosc2.asarray(np.ones(3), urlpath=str(bait), mode="w")
    (directory / "README.md").write_text(README)
    (directory / "pic.png").write_bytes(image.encode_png(image.colour(GRID[:3, :4])))
    return directory


class Stack(Services):
    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.data = demo_data(tmp / "demo")
        self.broker = self.start("bro", "--port", "0", "--statedir", str(tmp / "bro")).url
        self.pubs = {
            name: self.publish(name, data, wait=False)
            for name, data in (("demo", self.data), ("secret", tiny_root(tmp / "secret")))
        }
        users = make_users(tmp / "users.db", {ADA: ["demo"]})
        self.open = self.subscriber("sub", wait=False)
        self.guarded = self.subscriber("sub-auth", "--users", str(users), wait=False)
        for service in self.started:
            service.wait_ready()
        wait_root(self.open.url, "demo")

    def publish(self, name: str, data: Path, wait: bool = True):
        args = ("pub", name, str(data), "--broker", self.broker, "--http", "127.0.0.1:0")
        return self.start(*args, "--statedir", str(self.logs / f"pub-{name}"), wait=wait)

    def subscriber(self, name: str, *args: str, wait: bool):
        where = ("--http", "127.0.0.1:0", "--statedir", str(self.logs / name))
        return self.start("sub", "--broker", self.broker, *where, *args, wait=wait)

    def follow(self) -> None:
        """Follow demo on the open subscriber (a test that does it in the browser runs first)."""
        assert httpx.put(f"{self.open.url}/v1/roots/demo/follow", timeout=30).status_code == 200


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    services = Stack(tmp_path_factory.mktemp("web"))
    yield services
    services.close()


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and DRIVER):
        pytest.skip("no browser: install chromium and chromium-driver (scripts/test does, as root)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1200,900")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait(driver, condition, timeout: float = 15):
    """``condition``'s first true value; an element gone stale meanwhile (the page replaced
    it) is a condition not met yet."""
    stale = (StaleElementReferenceException,)
    waiter = WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=stale)
    return waiter.until(lambda d: condition(d))


def loaded(driver) -> bool:
    return driver.execute_script("return document.readyState") == "complete"


def shot(driver, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def no_script_ran(driver) -> None:
    """No alert is open and no injected handler changed the title."""
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - the property raises when there is none
    assert driver.execute_script("return document.title") != "pwned"


def live(driver) -> None:
    """Wait until the page's event stream is open (its 'ready' event): nothing is missed."""
    wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-connected"))
    driver.execute_script("window.caterva_test_marker = 1")  # gone if the page reloads


def not_reloaded(driver) -> bool:
    return driver.execute_script("return window.caterva_test_marker") == 1


def image_size(driver, element: str = "plane") -> tuple[int, int]:
    """The natural size of the page's image once it has loaded."""
    natural = "let i = arguments[0]; return [i.complete, i.naturalWidth, i.naturalHeight]"
    image = driver.find_element(By.ID, element)
    wait(driver, lambda d: d.execute_script(natural, image)[0])
    return tuple(driver.execute_script(natural, image)[1:])


def cells(driver) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#values tbody tr")
    return [[td.text for td in row.find_elements(By.TAG_NAME, "td")] for row in rows]


def test_the_roots_page_lists_roots_and_follows_one(stack, browser):
    browser.get(stack.open.url + "/")
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-root="demo"]')
    assert "online" in row.text and "unfollowed" in row.get_attribute("class")
    assert browser.find_element(By.CSS_SELECTOR, 'tr[data-root="secret"]')
    row.find_element(By.CSS_SELECTOR, "button.follow").click()
    followed = 'tr[data-root="demo"].followed'
    row = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, followed))[0]
    assert row.find_element(By.CSS_SELECTOR, ".count").text == "7"
    shot(browser, "roots")
    row.find_element(By.LINK_TEXT, "demo").click()  # returns before the next page is there
    cells = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#datasets td.name"))
    names = [e.text for e in cells]
    assert names == [
        "<script>alert(1)</",
        "README.md",
        "cube.b2nd",
        "grid.b2nd",
        "pic.png",
        "table.b2nd",
        "wave.b2nd",
    ]
    shot(browser, "root")


def test_a_dataset_table_shows_what_numpy_reads(stack, browser):
    stack.follow()
    browser.get(f"{stack.open.url}/roots/demo/cube.b2nd?i0=2&r0=10&c0=5")
    shown = [[float(v) for v in row] for row in cells(browser)]
    assert np.array_equal(np.array(shown), CUBE[2, 10:30, 5:15])
    # the page read the 2 x 2 chunks of plane 2 the window covers, and the chunk map says so
    stats = httpx.get(stack.pubs["demo"].url + "/v1/stats").json()
    assert stats["datasets"]["cube.b2nd"] == 4
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chunkmap span.all")) == 4
    shot(browser, "dataset-table")
    box = browser.find_element(By.ID, "i0")  # another index on axis 0, by the page's form
    box.clear()
    box.send_keys("3")
    table = browser.find_element(By.ID, "values")
    browser.find_element(By.ID, "show").click()
    # the form loads a new page: the box said 3 before it went, so wait for the old one to go
    wait(browser, lambda d: staleness_of(table)(d) and loaded(d))
    assert browser.find_element(By.ID, "i0").get_attribute("value") == "3"
    shown = [[float(v) for v in row] for row in cells(browser)]
    assert np.array_equal(np.array(shown), CUBE[3, 0:20, 0:10])
    browser.get(f"{stack.open.url}/roots/demo/table.b2nd?r0=20")
    headers = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#values thead th")]
    assert headers == ["", "x", "y", "s"]
    rows = cells(browser)
    assert [int(r[0]) for r in rows] == TABLE["x"][20:].tolist()
    assert [float(r[1]) for r in rows] == TABLE["y"][20:].tolist()


def test_the_image_view_is_a_png_of_the_plane(stack, browser):
    stack.follow()
    for query, size in (("i0=1", (40, 30)), ("rows=0&cols=2&i1=5", (40, 4))):
        browser.get(f"{stack.open.url}/roots/demo/cube.b2nd?view=image&{query}")
        assert image_size(browser) == size, query
    browser.get(f"{stack.open.url}/roots/demo/wave.b2nd?view=image")
    assert image_size(browser) == (360, 240)
    shot(browser, "dataset-image")
    browser.get(f"{stack.open.url}/roots/demo/pic.png")  # an image file is shown as itself
    assert image_size(browser, "picture") == (4, 3)
    alone = httpx.get(f"{stack.open.url}/ui/raw/demo/pic.png")
    assert alone.headers["content-type"] == "image/png"
    assert "sandbox" in alone.headers["content-security-policy"]  # opened alone: inert


def test_downloads_are_the_dataset_and_the_view(stack, tmp_path):
    stack.follow()
    url = f"{stack.open.url}/ui"
    window = httpx.get(f"{url}/npy/demo/cube.b2nd", params={"i0": 2, "r0": 10, "c0": 5})
    assert np.array_equal(np.load(io.BytesIO(window.content)), CUBE[2, 10:30, 5:15])
    plane = httpx.get(f"{url}/npy/demo/cube.b2nd", params={"rows": 2, "cols": 1, "part": "plane"})
    assert np.array_equal(np.load(io.BytesIO(plane.content)), CUBE[0].T)
    whole = httpx.get(f"{url}/file/demo/cube.b2nd")
    assert 'filename="cube.b2nd"' in whole.headers["content-disposition"]
    (tmp_path / "cube.b2nd").write_bytes(whole.content)
    assert np.array_equal(blosc2.open(str(tmp_path / "cube.b2nd"))[:], CUBE)


def test_a_change_at_the_publisher_appears_without_reload(stack, browser):
    stack.follow()
    browser.get(f"{stack.open.url}/roots/demo/grid.b2nd")
    assert not browser.find_element(By.ID, "changed").is_displayed()
    live(browser)
    blosc2.open(str(stack.data / "grid.b2nd"), mode="a")[0:10, 0:10] = -1.0
    wait(browser, lambda d: d.find_element(By.ID, "changed").is_displayed())
    assert not_reloaded(browser)
    shot(browser, "dataset-changed")
    browser.find_element(By.ID, "refresh").click()
    wait(browser, lambda d: cells(d)[0][0] == "-1.0")
    # a root's listing follows its root: a new dataset shows up in the open page
    browser.get(f"{stack.open.url}/roots/demo")
    live(browser)
    blosc2.asarray(np.zeros(5), urlpath=str(stack.data / "new.b2nd"), mode="w")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-path="new.b2nd"]'))
    assert not_reloaded(browser)
    # the roots page: a root appearing, then going offline
    browser.get(stack.open.url + "/")
    live(browser)
    late = stack.publish("late", tiny_root(stack.logs / "late"))
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-root="late"] .badge.online'))
    late.stop()
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-root="late"] .badge.offline'))
    assert not_reloaded(browser)


def test_names_metadata_and_files_never_run_script(stack, browser):
    stack.follow()
    url = stack.open.url
    browser.get(f"{url}/roots/demo?q=script")
    link = browser.find_element(By.CSS_SELECTOR, "#datasets td.name a")
    assert link.text == BAIT
    link.click()
    [name] = wait(browser, lambda d: d.find_elements(By.ID, "name"))
    assert name.text == BAIT
    no_script_ran(browser)
    browser.get(f"{url}/roots/demo/cube.b2nd")
    note = browser.find_element(By.CSS_SELECTOR, "#vlmeta td")
    assert note.text == SCRIPTED and not note.find_elements(By.CSS_SELECTOR, "*")
    no_script_ran(browser)
    browser.get(f"{url}/roots/demo/README.md")
    article = browser.find_element(By.CSS_SELECTOR, "#preview article")
    assert "<script>alert(3)</script>" in article.text
    assert not article.find_elements(By.CSS_SELECTOR, "script, img, a[href^=javascript]")
    no_script_ran(browser)
    shot(browser, "markdown")
    answer = httpx.get(f"{url}/roots/demo/README.md")
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "unsafe-inline" not in answer.headers["content-security-policy"]


def test_follow_and_unfollow_need_this_page_and_its_token(stack):
    url = stack.open.url
    with httpx.Client(base_url=url) as client:
        page = client.get("/").text
        token = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        form = {"root": "secret", "action": "follow", "csrf": token}
        here, evil = {"Origin": url}, {"Origin": "http://evil.example"}
        assert client.post("/ui/follow", data=form, headers=evil).status_code == 403
        forged = {**form, "csrf": "0" * 64}
        assert client.post("/ui/follow", data=forged, headers=here).status_code == 403
        assert client.post("/ui/follow", data=form).status_code == 403  # no origin at all
        listed = client.get("/v1/roots").json()["roots"]
        assert not any(r["root"] == "secret" and r["followed"] for r in listed)
        assert client.post("/ui/follow", data=form, headers=here).status_code == 303
        listed = client.get("/v1/roots").json()["roots"]
        assert any(r["root"] == "secret" and r["followed"] for r in listed)


def test_every_page_wants_a_login_with_auth(stack):
    """Deny by default, as on the API: the page's routes check the login cookie themselves
    (they are not under the API's check), so each one is tried without it."""
    values = {"root": "demo", "path": "cube.b2nd", "name": "app.js"}
    public = {"/login", "/static/{name}"}
    for route in routes.ROUTES:
        path = route.path.replace("{path:path}", "{path}").format(**values)
        for method in route.methods - {"HEAD"}:
            answer = httpx.request(method, stack.guarded.url + path)
            if route.path in public or route.path == "/logout":  # login, logout: forms, refused
                assert answer.status_code == (200 if method == "GET" else 400), (method, path)
            elif method == "GET":
                assert answer.status_code == 303, path
                assert answer.headers["location"].startswith("/login?next="), path
            else:
                assert answer.status_code == 401, (method, path)


def test_login_grants_and_the_forbidden_root(stack, browser):
    url = stack.guarded.url
    browser.delete_all_cookies()
    browser.get(url + "/roots/demo")
    wait(browser, lambda d: "/login" in d.current_url)
    shot(browser, "login")
    browser.find_element(By.ID, "email").send_keys(ADA)
    browser.find_element(By.ID, "password").send_keys("wrong password")
    browser.find_element(By.ID, "login").click()
    # the click returns before the answer is loaded: wait for the page that says why
    [said] = wait(browser, lambda d: d.find_elements(By.ID, "login-error"))
    assert "wrong email or password" in said.text
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.ID, "login").click()
    wait(browser, lambda d: d.current_url.endswith("/roots/demo"))  # back where it was going
    browser.find_element(By.ID, "follow").click()  # not followed here yet: the page offers it
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-path="cube.b2nd"]'))
    cookie = browser.get_cookie("caterva_login")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # out of the script's reach
    browser.get(url + "/")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, 'tr[data-root="demo"]'))
    assert not browser.find_elements(By.CSS_SELECTOR, 'tr[data-root="secret"]')  # absent
    browser.get(url + "/roots/secret")
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("403")
    jar = {"caterva_login": cookie["value"]}
    assert httpx.get(url + "/roots/secret", cookies=jar).status_code == 403
    assert httpx.get(url + "/roots/secret").status_code == 303  # no login: to the login page
    browser.find_element(By.CSS_SELECTOR, ".logout button").click()
    wait(browser, lambda d: "/login" in d.current_url)
    assert browser.get_cookie("caterva_login") is None
