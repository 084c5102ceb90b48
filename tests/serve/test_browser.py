"""The web page in a real browser: headless Chromium (Debian's package) driven by Playwright, against
`tvr serve` started on 127.0.0.1 by the test. A screenshot is saved as a test artifact
($TVR_TEST_ARTIFACTS, else the test's temporary folder)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "index"))
from index_helpers import make_checkpoint  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _webm(path: Path, seed: int) -> None:
    """A 2 s VP9 video (a codec every Chromium plays) whose colour changes every frame."""
    from tvr.io.writer import write_video

    rng = np.random.default_rng(seed)
    frames = np.empty((16, 64, 64, 3), np.uint8)
    for i in range(16):
        frames[i] = rng.integers(30, 226, 3, dtype=np.uint8)
        frames[i, :32, :32] = rng.integers(30, 226, 3, dtype=np.uint8)
    write_video(path, frames, fps=8)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (.ci/run installs Debian's 'chromium' where apt-get works)")
    pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency (pip install -e .[dev])")
    from tvr.index.build import BuildOptions, build_index

    root = tmp_path_factory.mktemp("browser")
    lines = []
    for i, caption in enumerate(["red circle left", "blue square right", "green circle", "small red square", "large blue"]):
        _webm(root / "videos" / f"clip{i}.webm", seed=i)
        lines.append({"video": f"videos/clip{i}.webm", "caption": caption})
    (root / "all.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = make_checkpoint(root / "run")
    build_index(root / "all.jsonl", run, root / "index", BuildOptions(querybank=root / "all.jsonl", workers=1, progress=False))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["tvr", "serve", str(root / "index"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tvr serve exited: {proc.stderr.read().decode()[-500:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    try:
        yield url, root
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stderr.close()


def _expected_top(root: Path, query: str, k: int, postproc: str = "none") -> list[str]:
    from tvr.index.search import Searcher

    s = Searcher.open(root / "index")
    try:
        return [h.item.name for h in s.search([query], k=k, postproc=postproc)[0]]
    finally:
        s.close()


def test_search_play_from_the_moment_and_a_shared_link(server, tmp_path):
    from playwright.sync_api import sync_playwright

    url, root = server
    artifacts = Path(os.environ.get("TVR_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800})
            page.goto(url + "/")
            page.wait_for_function("document.querySelector('#info').textContent.includes('5 videos')")
            page.fill("#q", "red circle")
            page.keyboard.press("Enter")
            page.wait_for_selector(".hit")
            names = page.eval_on_selector_all(".hit .name", "els => els.map(e => e.textContent)")
            assert names == _expected_top(root, "red circle", 10)
            assert "cosine" in page.inner_text("#meaning")  # what the score is, said on the page

            first = page.query_selector(".hit")
            assert first.query_selector(".timeline .mark") is not None  # the moment marked on the card's time bar
            moment = float(page.evaluate("document.querySelector('.hit').hitData.moment.time_s"))
            first.query_selector("img").click()
            page.wait_for_selector(".hit video")
            page.wait_for_function("(() => { const v = document.querySelector('.hit video'); "
                                   "return v.readyState >= 1 && Math.abs(v.currentTime - Number(v.dataset.moment)) < 0.15; })()",
                                   timeout=20_000)
            current = page.evaluate("document.querySelector('.hit video').currentTime")
            assert abs(current - moment) < 0.15
            page.screenshot(path=str(artifacts / "tvr-serve-search.png"), full_page=True)

            page.focus("#q")  # keyboard: down to the first card, Enter plays, m = more like this
            page.keyboard.press("ArrowDown")
            assert page.evaluate("document.activeElement.classList.contains('hit')")
            page.keyboard.press("m")
            page.wait_for_function("document.querySelector('#status').textContent.includes('most like')")

            page.goto(url + "/?q=blue%20square&k=7&postproc=is")  # a shared link with k and postproc
            page.wait_for_selector(".hit")
            assert page.input_value("#k") == "7" and page.input_value("#postproc") == "is"
            names = page.eval_on_selector_all(".hit .name", "els => els.map(e => e.textContent)")
            assert names == _expected_top(root, "blue square", 7, "is")
            assert "inverted softmax" in page.inner_text("#meaning")

            page.goto(url + "/?q=red&k=500&postproc=bogus")  # out of range: clamped, said, never raw JSON
            page.wait_for_selector(".hit")
            status = page.inner_text("#status")
            assert "out of range" in status and "not available" in status and "{" not in status
            assert page.input_value("#k") == "100" and page.input_value("#postproc") == "none"

            phone = browser.new_page(viewport={"width": 375, "height": 740})  # readable at phone width
            phone.goto(url + "/?q=red")
            phone.wait_for_selector(".hit")
            assert phone.evaluate("document.documentElement.scrollWidth") <= 375
            phone.screenshot(path=str(artifacts / "tvr-serve-phone.png"))
        finally:
            browser.close()
    assert (artifacts / "tvr-serve-search.png").stat().st_size > 1000
