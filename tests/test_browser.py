"""The demo page in headless Chromium against a real gunicorn: upload a file, try the sample,
record through Chromium's fake microphone, and a phone-sized screen; the recognised characters on
the time axis (hovering one highlights its span), the posteriorgram and the attention map.

Needs Debian's `chromium` + `chromium-driver`. Without them these tests are skipped on a
developer's machine and FAIL in CI (CI=true). Screenshots go to $ASRDEMO_TEST_ARTIFACTS
(default /tmp/asrdemo-artifacts).
"""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asrdemo.data.datadir import read_data_dir
from asrdemo.score import cer
from demo_fixture import DemoExp, GunicornServer, sample_wav, spelling

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 60


def _require_browser():
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    if missing:
        message = f"browser tests need {', '.join(missing)} (apt-get install -y chromium chromium-driver)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("ASRDEMO_TEST_ARTIFACTS", "/tmp/asrdemo-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def exp(trained_exp):
    """The tiny trained model of conftest.py: it knows its 10 training utterances by heart, so the
    page must show *their* text — proof that browser -> WAV -> server -> recognizer is right."""
    return DemoExp(trained_exp, trained=True)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_work):
    """Two training utterances: one to upload (48 kHz wav), one for the fake microphone, padded with
    a second of silence (Chromium loops the file)."""
    tmp = tmp_path_factory.mktemp("browser_audio")
    upload, spoken = read_data_dir(tiny_work / "data" / "train")[:2]
    mic = tmp / "mic.wav"
    wave, sr = sf.read(spoken.wav)
    sf.write(mic, np.concatenate([wave, np.zeros(sr)]), sr, subtype="PCM_16")
    return {"sample": sample_wav(tmp), "upload": Path(upload.wav), "upload_text": upload.text,
            "mic": mic, "mic_text": spoken.text, "mic_seconds": len(wave) / sr}


@pytest.fixture(scope="module")
def server(exp, files):
    _require_browser()
    env = {"ASRDEMO_WORKERS": "1", "ASRDEMO_THREADS": "2", "ASRDEMO_SAMPLE": str(files["sample"])}
    with GunicornServer(exp.path, artifacts_dir() / "gunicorn_browser.log", env=env) as srv:
        yield srv


@pytest.fixture()
def browser(server, files, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={files['mic']}", f"--user-data-dir={tmp_path / 'profile'}",
                "--window-size=1100,1400"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        driver.get(server.url + "/")
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition, what, timeout=WAIT_S):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def by_id(driver, element_id):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id)


def wait_for_result(driver, name):
    """Waits for the result card that only a successful api/recognize response fills; saves a screenshot."""
    try:
        wait_for(driver, lambda d: by_id(d, "result-card").get_attribute("data-state") == "done"
                 or by_id(d, "error-box").is_displayed(), "no result and no error shown")
    finally:
        driver.save_screenshot(str(artifacts_dir() / f"{name}.png"))
    assert not by_id(driver, "error-box").is_displayed(), by_id(driver, "error-box").text
    assert by_id(driver, "result-card").is_displayed()
    assert by_id(driver, "duration").text.endswith(" s")
    assert by_id(driver, "spectrogram").get_attribute("src").startswith("data:image/png;base64,")
    return by_id(driver, "transcript")


def by_css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def canvas_ink(driver, element_id):
    """How many of a canvas's pixels are not its background: 0 for a canvas nothing was drawn on."""
    return driver.execute_script("""
        const c = document.getElementById(arguments[0]);
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] && !(d[i] === 244 && d[i + 1] === 245 && d[i + 2] === 248)
            && !(d[i] === 255 && d[i + 1] === 255 && d[i + 2] === 255)) n++;
        return n;""", element_id)


def check_timeline(driver, transcript_text, name, interact="hover"):
    """The character row spells the transcript in time order inside the spectrogram's width; hovering
    (or tapping: `interact="click"`) a character highlights its span on the spectrogram, and moving
    to another moves the highlight. The posteriorgram and the attention map are drawn."""
    from selenium.webdriver.common.action_chains import ActionChains

    chars = by_css(driver, "#char-track .char")
    assert chars, "no character row"
    shown = [c.text for c in chars]
    tokens = [c.get_attribute("title").split()[0] for c in chars]  # the token itself (e.g. <unk>)
    assert "".join(spelling(t) for t in tokens) == transcript_text, (shown, transcript_text)
    assert all(label == t for label, t in zip(shown, tokens) if not t.startswith("<")), (shown, tokens)
    starts = [float(c.get_attribute("data-start")) for c in chars]
    ends = [float(c.get_attribute("data-end")) for c in chars]
    assert starts == sorted(starts) and all(s < e for s, e in zip(starts, ends))
    assert all(e <= s for e, s in zip(ends, starts[1:])), "spans overlap"
    image = by_id(driver, "spectrogram")
    img = image.rect
    duration = float(by_css(driver, "#spectrogram-figure .time-end")[0].text.split()[0])
    assert ends[-1] <= duration + 1e-3
    for c in chars:  # inside the spectrogram's width, over (or near) its own time
        r = c.rect
        assert img["x"] - 1 <= r["x"] and r["x"] + r["width"] <= img["x"] + img["width"] + 1, (c.text, r, img)
    lanes = {c.get_attribute("data-lane") for c in chars}
    for lane in lanes:  # no two characters of one lane overlap
        xs = sorted((c.rect["x"], c.rect["x"] + c.rect["width"]) for c in chars if c.get_attribute("data-lane") == lane)
        assert all(a[1] <= b[0] + 0.5 for a, b in zip(xs, xs[1:])), xs
    highlight = by_id(driver, "span-highlight")
    assert not highlight.is_displayed()
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", by_id(driver, "transcript"))
    picks = sorted({len(chars) // 3, (2 * len(chars)) // 3})
    lefts = []
    for k in picks:
        if interact == "hover":
            ActionChains(driver).move_to_element(chars[k]).perform()
        else:
            chars[k].click()
        wait_for(driver, lambda d: highlight.is_displayed() and highlight.get_attribute("data-index") == str(k),
                 f"{interact} on character {k} highlighted nothing", timeout=5)
        assert "active" in chars[k].get_attribute("class")
        assert by_id(driver, "char-track").get_attribute("data-active") == str(k)
        h = highlight.rect
        expected_left = img["x"] + starts[k] / duration * img["width"]
        expected_width = (ends[k] - starts[k]) / duration * img["width"]
        assert abs(h["x"] - expected_left) <= 2, (h, expected_left)
        assert abs(h["width"] - max(expected_width, 4)) <= 2, (h, expected_width)  # 4: its two borders
        assert img["y"] - 1 <= h["y"] and h["y"] + h["height"] <= img["y"] + img["height"] + 1
        lefts.append(h["x"])
    if len(picks) == 2:
        assert lefts[1] > lefts[0], "the highlight did not move to the second character"
    for canvas in ("posteriorgram", "attention"):
        assert by_id(driver, f"{canvas}-figure").is_displayed()
        assert by_id(driver, canvas).get_attribute("data-drawn") == "true"
        assert canvas_ink(driver, canvas) > 200, f"the {canvas} canvas is blank"
        assert abs(by_id(driver, canvas).rect["width"] - img["width"]) <= 1  # the same time axis
        assert abs(by_id(driver, canvas).rect["x"] - img["x"]) <= 1
    driver.save_screenshot(str(artifacts_dir() / f"{name}.png"))


def test_upload_a_file_shows_a_transcript(browser, files, exp):
    by_id(browser, "file-input").send_keys(str(files["upload"]))
    send = by_id(browser, "send-button")
    wait_for(browser, lambda d: send.is_enabled(), "send stays disabled after choosing a file")
    send.click()
    transcript = wait_for_result(browser, "upload")
    duration = sf.info(str(files["upload"])).duration
    assert abs(float(by_id(browser, "duration").text.split()[0]) - duration) < 0.01
    assert "wav" in by_id(browser, "input-info").text
    assert cer(files["upload_text"], transcript.text) <= 0.1, (files["upload_text"], transcript.text)
    check_timeline(browser, transcript.text, "upload_timeline")


def test_try_the_sample_shows_reference_and_cer(browser, exp):
    by_id(browser, "sample-button").click()
    transcript = wait_for_result(browser, "sample")
    assert by_id(browser, "cer-block").is_displayed()
    assert by_id(browser, "reference-text").text == by_id(browser, "sample-reference").text
    assert by_id(browser, "cer-value").text.endswith("%")
    if exp.trained:
        assert transcript.text.strip()


def test_record_through_the_fake_microphone(browser, files, exp):
    record = by_id(browser, "record-button")
    record.click()
    wait_for(browser, lambda d: by_id(d, "record-state").get_attribute("data-state") == "recording",
             "the page never showed the recording state", timeout=20)
    peak_width, seconds = 0.0, 0.0
    deadline = time.monotonic() + 30
    while seconds < files["mic_seconds"] + 0.5 and time.monotonic() < deadline:  # the level meter must move while recording
        width = browser.execute_script("return parseFloat(document.getElementById('level-bar').style.width) || 0")
        peak_width = max(peak_width, width)
        seconds = float(by_id(browser, "record-time").text.split()[0])
        time.sleep(0.1)
    browser.save_screenshot(str(artifacts_dir() / "recording.png"))
    assert seconds >= 2.0, "the recording clock did not advance"
    assert peak_width > 20, f"the level meter stayed at {peak_width}%"
    assert "recording" in record.get_attribute("class")
    record.click()  # stop -> WAV -> api/recognize
    transcript = wait_for_result(browser, "recorded")
    assert by_id(browser, "record-state").get_attribute("data-state") == "idle"
    assert float(by_id(browser, "duration").text.split()[0]) >= 2.0
    assert by_id(browser, "input-info").text.endswith("1 ch") and "wav" in by_id(browser, "input-info").text
    # what Chromium's microphone heard is the training utterance (maybe cut by the loop point)
    assert cer(files["mic_text"], transcript.text) <= 0.35, (files["mic_text"], transcript.text)


def test_phone_sized_screen(browser, files):
    browser.set_window_size(390, 844)
    browser.get(browser.current_url)
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    browser.save_screenshot(str(artifacts_dir() / "phone.png"))
    assert overflow <= 1, f"the page is {overflow}px wider than a phone screen"
    assert by_id(browser, "record-button").size["width"] >= 44
    # with a result: the character row, the spectrogram and both canvases still fit; a tap highlights
    by_id(browser, "file-input").send_keys(str(files["upload"]))
    send = by_id(browser, "send-button")
    wait_for(browser, lambda d: send.is_enabled(), "send stays disabled after choosing a file")
    send.click()
    transcript = wait_for_result(browser, "phone_result")
    overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, f"with a result the page is {overflow}px wider than a phone screen"
    check_timeline(browser, transcript.text, "phone_timeline", interact="click")
