"""The playground in a real browser: Debian's headless Chromium driven by Selenium through
Debian's chromedriver. A moderator grants credits, a member runs /ref2video with a file
chosen in the file input (one too large is refused before sending), the clip plays in the
thread, Re-roll is confirmed, and the page shows the balance less two charges; keyboard
focus survives a message being rendered anew, and comes back from the bot's form, which is
then filled in and sent for a third job; a fourth, from the sample clip, has a prompt of
HTML that must show as text and never run. The page runs under its Content-Security-Policy
and must not trip it. A screenshot of each step goes to $PLAYGROUND_SCREENSHOTS (default:
the test's tmp dir), whose path is printed.

Missing /usr/bin/chromium or /usr/bin/chromedriver fails the test when CI is set (CI must
run it) and skips it otherwise, naming scripts/ensure-browser, which installs them."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from money.prices import PriceTable
from playground.app import Playground
from simulator.clip import sample_reference

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--window-size=1400,900",
)
PRICE = PriceTable().credits_for("1280*720", 5)  # /ref2video's default size and duration
GRANT = 1000
XSS = '<img src=x onerror="window.__xss=1">'


def _need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    message = (f"{' and '.join(missing)} missing: run scripts/ensure-browser (installs Debian's "
               "chromium and chromium-driver)")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    _need_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # CSP reports, errors
    # The driver's path is given, so Selenium Manager (which would download one) never runs.
    chrome = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    chrome.set_script_timeout(20)
    try:
        yield chrome
    finally:
        chrome.quit()


class Page:
    def __init__(self, driver: webdriver.Chrome, shots: Path) -> None:
        self.d = driver
        self.shots = shots
        self.step = 0

    def wait(self, probe: Callable[[], Any], what: str, within: float = 30.0) -> Any:
        """Until `probe()` is truthy. Pushes re-render messages at any moment, so an element
        that went stale meanwhile just means: look again."""
        try:
            return WebDriverWait(self.d, within, poll_frequency=0.1,
                                 ignored_exceptions=(StaleElementReferenceException,)).until(
                lambda d: probe(), message=what)
        except TimeoutException:
            self.shot(f"timeout-{what.replace(' ', '-')}")
            raise

    def click(self, find: Callable[[], WebElement | None], what: str,
              within: float = 30.0) -> None:
        """Click what `find()` returns once it is there (found again if it went stale)."""
        def attempt() -> bool:
            target = find()
            if target is None:
                return False
            target.click()
            return True

        self.wait(attempt, what, within)

    def shot(self, name: str) -> Path:
        self.step += 1
        path = self.shots / f"{self.step:02d}-{name}.png"
        self.d.save_screenshot(str(path))
        return path

    def css(self, selector: str) -> list[WebElement]:
        return self.d.find_elements(By.CSS_SELECTOR, selector)

    def be(self, name: str) -> None:
        self.click(lambda: self.d.find_element(By.CSS_SELECTOR, f'label[data-viewer="{name}"]'),
                   f"the choice of {name}")
        self.wait(lambda: self.css(f'#app[data-viewer="{name}"]'), f"the view of {name}")

    def command(self, key: str) -> None:
        Select(self.d.find_element(By.ID, "command")).select_by_value(key)
        self.wait(lambda: self.d.find_element(By.ID, "command").get_attribute("data-built") == key,
                  f"the form of /{key}")

    def messages(self) -> list[WebElement]:
        return self.css("#message-list article.msg")

    def with_text(self, needle: str) -> list[WebElement]:
        return [m for m in self.messages() if needle in m.text]

    def with_video(self) -> list[WebElement]:
        return [m for m in self.messages() if m.find_elements(By.TAG_NAME, "video")]

    def button(self, messages: list[WebElement], label: str) -> WebElement | None:
        """The enabled button labelled `label` on the last of `messages` that has one."""
        for message in reversed(messages):
            for b in message.find_elements(By.CSS_SELECTOR, "button.btn"):
                if b.text == label and b.is_enabled():
                    return b
        return None

    def focused(self) -> dict[str, Any]:
        """What has keyboard focus: its tag, custom_id and message (article) id."""
        found: dict[str, Any] = self.d.execute_script(FOCUSED)
        return found

    def available(self, member: str) -> int:
        text = self.d.find_element(By.CSS_SELECTOR, f'[data-member="{member}"] .available').text
        return int(text.replace(",", ""))


def _screenshots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    shots = Path(os.environ.get("PLAYGROUND_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with capsys.disabled():  # shown even when the test passes
        print(f"\nplayground screenshots: {shots.resolve()}")
    return shots


PLAY = """
const done = arguments[arguments.length - 1];
const v = document.querySelector('#message-list video');
if (!v) { done({error: 'no video element'}); return; }
v.muted = true;  // autoplay policy: a muted video may play without a gesture
v.playground_marker = 'first';
const codec = v.canPlayType('video/mp4; codecs="avc1.64001F"');
v.play().then(() => done({codec}), (e) => done({error: String(e), codec,
  mediaError: v.error && [v.error.code, v.error.message]}));
"""
FOCUSED = """
const a = document.activeElement;
const article = a && a.closest('#message-list article[data-id]');
return {tag: a ? a.tagName.toLowerCase() : null, id: a ? a.id : null,
        custom_id: a && a.dataset ? a.dataset.customId || null : null,
        message: article ? article.dataset.id : null,
        old: Boolean(article && article.playground_old), text: a ? a.textContent : null};
"""
MARK_OLD = """
const article = document.querySelector(`#message-list article[data-id="${arguments[0]}"]`);
article.playground_old = true;
"""
RENDERED_ANEW = """
const article = document.querySelector(`#message-list article[data-id="${arguments[0]}"]`);
return Boolean(article && !article.playground_old);
"""
PROGRESS = """
const v = document.querySelector('#message-list video');
return {readyState: v.readyState, currentTime: v.currentTime, paused: v.paused,
        error: v.error && [v.error.code, v.error.message], width: v.videoWidth,
        duration: v.duration, marker: v.playground_marker || null};
"""


async def test_a_member_makes_a_clip_watches_it_and_rerolls_it(
        playground: Playground, driver: webdriver.Chrome, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    page = Page(driver, _screenshots(tmp_path, capsys))
    reference = tmp_path / "my-reference.mp4"
    reference.write_bytes(sample_reference())
    too_large = tmp_path / "too-large.mp4"
    with too_large.open("wb") as f:  # sparse: its size is all the page looks at
        f.truncate(300 * 1024 * 1024)
    # Selenium blocks: it runs in a thread while this loop serves the page.
    started = time.monotonic()
    await asyncio.to_thread(scenario, page, playground, reference, too_large)
    assert time.monotonic() - started < 60.0


def bot_edits(playground: Playground, channel_id: str, message_id: str) -> None:
    """Edit one of the bot's messages through the local Discord's REST API, as the bot
    does: the page renders the message anew."""
    emulator = playground.emulator
    request = urllib.request.Request(  # noqa: S310 - the local Discord's http URL
        f"{emulator.api_base}/channels/{channel_id}/messages/{message_id}", method="PATCH",
        data=json.dumps({"content": f"edited at {time.monotonic():.3f}"}).encode(),
        headers={"Authorization": f"Bot {emulator.bot_token}",
                 "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - as above
        assert resp.status == 200


def rerender(page: Page, playground: Playground, message_id: str) -> None:
    """Have the bot edit message `message_id` (in the room shown) and wait until the page
    has replaced its element."""
    page.d.execute_script(MARK_OLD, message_id)
    bot_edits(playground, page.d.execute_script("return ui.room;"), message_id)
    page.wait(lambda: page.d.execute_script(RENDERED_ANEW, message_id),
              "the message rendered anew")


def scenario(page: Page, playground: Playground, reference: Path, too_large: Path) -> None:
    driver = page.d

    driver.get(playground.url)
    page.wait(lambda: "live" in driver.find_element(By.ID, "connection").text, "the live channel")
    page.wait(lambda: page.css('#app[data-viewer="alice"]'), "the first view")
    assert [b.get_attribute("data-name") for b in page.css("button.channel")] == [
        "clips", "after-dark", "no-threads", "audit"]
    page.shot("loaded")

    # The moderator grants alice credits; Enter in the form sends it.
    page.be("mod")
    page.command("credits grant")
    page.wait(lambda: "@alice" in [o.text for o in Select(
        driver.find_element(By.ID, "opt-user")).options], "members in the user list")
    Select(driver.find_element(By.ID, "opt-user")).select_by_visible_text("@alice")
    driver.find_element(By.ID, "opt-amount").send_keys(str(GRANT), Keys.ENTER)
    granted = page.wait(lambda: "".join(m.text for m in page.with_text("Granted")),
                        "the grant's answer")
    assert "Only you can see this" in granted and "mod used /credits grant" in granted
    page.wait(lambda: page.available("alice") == GRANT, "alice's balance")
    page.shot("granted")

    # Alice runs /ref2video with a real file chosen in the file input; one too large for
    # the playground is refused before a byte is sent, saying the limit.
    page.be("alice")
    assert page.with_text("Granted") == []  # the moderator's private answer is theirs alone
    page.command("ref2video")
    driver.find_element(By.ID, "opt-prompt").send_keys("a cat surfing a wave at sunset")
    driver.find_element(By.ID, "opt-video").send_keys(str(too_large))
    driver.find_element(By.ID, "send").click()
    refusal = page.wait(lambda: driver.find_element(By.ID, "composer-error").text,
                        "the refusal of a file too large")
    assert "300.00 MB" in refusal and "at most 224.00 MB" in refusal, refusal
    driver.find_element(By.ID, "opt-video").send_keys(str(reference))
    driver.find_element(By.ID, "send").click()
    page.wait(lambda: page.with_text("Job #1 is queued"), "the private answer")
    page.wait(lambda: page.css(".thread-chip"), "the job's thread")
    page.shot("queued")

    # The clip in the thread really plays.
    page.click(lambda: next(iter(page.css(".thread-chip")), None), "the thread's link")
    page.wait(lambda: page.css("#message-list video"), "the clip in the thread", within=60.0)
    played = driver.execute_async_script(PLAY)
    assert "error" not in played, f"Chromium cannot play the MP4: {played}"
    first = driver.execute_script(PROGRESS)
    page.wait(lambda: driver.execute_script(PROGRESS)["currentTime"] > first["currentTime"] + 0.3,
              "the clip's playback advancing")
    now = driver.execute_script(PROGRESS)
    assert now["readyState"] >= 2 and now["error"] is None and now["width"] > 0, now
    page.shot("playing")

    # Re-roll, confirmed at today's price.
    page.click(lambda: page.button(page.with_video(), "Re-roll"), "Re-roll")
    question = page.wait(lambda: "".join(m.text for m in page.with_text("Only you can see this")
                                         if page.button([m], "Confirm")), "the price question")
    assert f"{PRICE} credits" in question
    page.shot("confirm-reroll")
    page.click(lambda: page.button(page.with_text("Only you can see this"), "Confirm"),
               "Confirm")
    page.wait(lambda: page.with_text("Job #2 is queued"), "the re-roll's job")
    # Keyed rendering: the clip's element (and its playback) survived every push since.
    assert driver.execute_script(PROGRESS)["marker"] == "first"

    # The re-roll is a job of its own, with a thread of its own.
    page.click(lambda: next((t for t in page.css("button.thread") if "#2" in t.text), None),
               "thread #2")
    page.wait(lambda: page.css("#message-list video"), "the re-rolled clip", within=60.0)

    # Both charged, as the page shows from the bot's database.
    expected = GRANT - 2 * PRICE
    page.wait(lambda: page.available("alice") == expected, f"alice's balance of {expected}")
    assert driver.find_element(By.CSS_SELECTOR, '[data-member="alice"] .held').text == "0"
    page.shot("rerolled-and-charged")

    # Keyboard focus on a button survives its message being rendered anew (an edit).
    [clip] = page.with_video()
    clip_id = str(clip.get_attribute("data-id"))
    reroll = page.button([clip], "Re-roll")
    assert reroll is not None
    driver.execute_script("arguments[0].focus();", reroll)
    before = page.focused()
    assert before["custom_id"] and before["message"] == clip_id
    rerender(page, playground, clip_id)
    after = page.focused()
    assert (after["tag"], after["custom_id"], after["message"], after["old"]) == (
        "button", before["custom_id"], clip_id, False), after

    # The bot's form opens as a dialog; Escape closes it, and focus goes back to the
    # button that opened it, even though its message was rendered anew meanwhile.
    opener = page.button(page.with_video(), "Use as reference")
    assert opener is not None
    opener_id = opener.get_attribute("data-custom-id")
    opener.click()
    dialog = driver.find_element(By.ID, "modal")
    page.wait(lambda: dialog.get_attribute("open") is not None, "the form's dialog")
    assert driver.find_element(By.ID, "modal-title").text == "Use this clip as a reference"
    assert driver.switch_to.active_element.tag_name == "textarea"  # focus is in the form
    page.shot("reference-form")
    rerender(page, playground, clip_id)
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)
    page.wait(lambda: dialog.get_attribute("open") is None, "the dialog closed by Escape")
    back = page.focused()
    assert (back["custom_id"], back["message"], back["old"]) == (opener_id, clip_id, False), back
    server = playground.server
    assert server is not None
    page.wait(lambda: all(r.modal is None or r.id in server.view_state.closed_modals
                          for r in playground.emulator.interactions),
              "the form closed on the server")

    # Opened again, filled in and sent: a new job from this clip.
    page.click(lambda: page.button(page.with_video(), "Use as reference"), "Use as reference")
    page.wait(lambda: dialog.get_attribute("open") is not None, "the form's dialog again")
    driver.switch_to.active_element.send_keys("the same cat, surfing at night")
    driver.find_element(By.ID, "modal-submit").click()
    page.wait(lambda: dialog.get_attribute("open") is None, "the dialog closed by sending")
    page.wait(lambda: page.with_text("Job #3 is queued"), "the job from the form")
    assert page.focused()["tag"] in ("button", "select")  # not lost to <body>
    page.shot("reference-sent")

    # A prompt of HTML, with the sample clip: shown as text, never run.
    page.click(lambda: driver.find_element(By.CSS_SELECTOR, 'button.channel[data-name="clips"]'),
               "#clips")
    page.command("ref2video")
    driver.find_element(By.ID, "opt-prompt").send_keys(XSS)
    page.click(lambda: driver.find_element(By.CSS_SELECTOR, "button.sample"), "the sample clip")
    page.wait(lambda: "sample-reference.mp4" in driver.find_element(
        By.CSS_SELECTOR, ".file-note").text, "the sample clip chosen")
    driver.find_element(By.ID, "send").click()
    page.wait(lambda: page.with_text("Job #4 is queued"), "the job from the sample clip")
    shown = page.wait(lambda: [m for m in page.messages() if XSS in m.text],
                      "the prompt shown as text")
    assert shown and not page.css("#message-list img")
    assert driver.execute_script("return typeof window.__xss;") == "undefined"
    [*_, last] = [r for r in list(playground.emulator.interactions)
                  if r.type == 2 and r.name == "ref2video"]
    sent = last.payload["data"]["resolved"]["attachments"]
    assert [a["filename"] for a in sent.values()] == ["sample-reference.mp4"]
    page.shot("done")

    # Nothing the page does trips its Content-Security-Policy (inline scripts or styles).
    log: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    refused = [e["message"] for e in log if "Content Security Policy" in e["message"]
               or "Refused to" in e["message"]]
    assert refused == [], refused


def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(f"{__name__}.CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="scripts/ensure-browser"):
        _need_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="scripts/ensure-browser"):
        _need_browser()
