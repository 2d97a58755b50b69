"""``ml-rnn-names dashboard``: options, the artifact store, a live campaign under a polling dashboard,
and what a browser shows (headless Chromium).

The live-campaign test is the regression test for optuna-dashboard#545 ("database is locked" in the
workers while a dashboard polls a SQLite study): the dashboard's API is hammered while two worker
processes run, and every trial must complete, once, with no worker error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ml_rnn_names.cli import build_parser
from ml_rnn_names.commands import dashboard
from ml_rnn_names.study.artifacts import artifact_dir, artifact_store
from ml_rnn_names.study.campaign import Campaign
from ml_rnn_names.study.config import load_campaign
from storage_backends import (
    assert_exact_budget,
    assert_no_password,
    free_port,
    skip_or_fail,
    storage_url,  # noqa: F401  (fixture)
    trials_by_study,
    write_campaign,
)

STUDIES = ["tiny/RNN", "tiny/LSTM"]


def _get_json(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.load(response)


# ------------------------------------------------------------------------------------------- options


def test_defaults_bind_loopback_port_8080() -> None:
    args = build_parser().parse_args(["dashboard", "studies/rnn_vs_lstm.toml"])
    assert (args.host, args.port, args.func) == ("127.0.0.1", 8080, dashboard.cmd_dashboard)
    args = build_parser().parse_args(
        ["dashboard", "c.toml", "--host", "0.0.0.0", "--port", "9000", "--storage", "sqlite:///x.db"]
    )
    assert (args.host, args.port, args.storage) == ("0.0.0.0", 9000, "sqlite:///x.db")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.1.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert dashboard.is_loopback(host) is loopback


class _FakeServer:
    server_port = 8123

    def serve_forever(self) -> None:
        raise KeyboardInterrupt  # Ctrl-C at once

    def server_close(self) -> None:
        pass


@pytest.mark.parametrize(("host", "warned"), [("127.0.0.1", False), ("0.0.0.0", True)])
def test_warns_when_binding_beyond_loopback(
    host: str,
    warned: bool,
    tiny_data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    toml = write_campaign(tmp_path, tiny_data_dir)
    bound: list[tuple[str, int]] = []

    def fake_server(campaign: Campaign, host: str, port: int) -> _FakeServer:
        bound.append((host, port))
        return _FakeServer()

    monkeypatch.setattr(dashboard, "make_dashboard_server", fake_server)
    args = build_parser().parse_args(["dashboard", str(toml), "--host", host])
    assert args.func(args) == 0
    out = capsys.readouterr()
    assert bound == [(host, 8080)]
    assert ("no authentication" in out.err) is warned
    assert f"http://{host}:8123/dashboard/" in out.out
    assert "dashboard stopped" in out.err


def test_port_in_use_is_a_clear_error(tiny_data_dir: Path, tmp_path: Path) -> None:
    toml = write_campaign(tmp_path, tiny_data_dir)
    campaign = Campaign.from_toml(toml)
    first = dashboard.make_dashboard_server(campaign, "127.0.0.1", 0)
    try:
        with pytest.raises(Exception, match=r"cannot listen on 127\.0\.0\.1:\d+.*--port"):
            dashboard.make_dashboard_server(campaign, "127.0.0.1", first.server_port)
    finally:
        first.server_close()


def test_artifact_store_is_the_campaigns_folder(tiny_data_dir: Path, tmp_path: Path) -> None:
    import optuna

    config = load_campaign(write_campaign(tmp_path, tiny_data_dir))
    assert artifact_dir(config) == tmp_path / "tiny" / "artifacts"
    assert not artifact_dir(config).exists()
    store = artifact_store(config)
    assert artifact_dir(config).is_dir()

    storage = f"sqlite:///{tmp_path / 'a.db'}"
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    payload = tmp_path / "note.txt"
    payload.write_text("hello")
    artifact_id = optuna.artifacts.upload_artifact(
        artifact_store=store, file_path=str(payload), study_or_trial=trial
    )
    with contextlib.closing(store.open_reader(artifact_id)) as reader:
        assert reader.read() == b"hello"


# ------------------------------------------------------------------------- live campaign + dashboard


@contextlib.contextmanager
def _serving(campaign: Campaign) -> Iterator[str]:
    server = dashboard.make_dashboard_server(campaign, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.slow
def test_polling_dashboard_does_not_disturb_a_live_campaign(
    storage_url: str,  # noqa: F811
    tiny_data_dir: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    n_trials = 4
    toml = write_campaign(tmp_path, tiny_data_dir, n_trials=n_trials, epochs=(3, 4))
    campaign = Campaign.from_toml(toml, storage=storage_url)
    campaign.open()  # create the studies, so the poller has study pages to hit from the start
    stop = threading.Event()
    statuses: dict[int, int] = {}
    errors: list[str] = []

    def poll(base: str) -> None:
        while not stop.is_set():
            try:
                ids = [s["study_id"] for s in _get_json(f"{base}/api/studies")["study_summaries"]]
                statuses[200] = statuses.get(200, 0) + 1
                for study_id in ids:
                    detail = _get_json(f"{base}/api/studies/{study_id}")
                    assert "trials" in detail
                    statuses[200] += 1
            except urllib.error.HTTPError as exc:
                statuses[exc.code] = statuses.get(exc.code, 0) + 1
                errors.append(f"{exc.code}: {exc.read()[:300]!r}")
            except Exception as exc:
                errors.append(repr(exc))
            time.sleep(0.02)

    with _serving(campaign) as base:
        pollers = [threading.Thread(target=poll, args=(base,), daemon=True) for _ in range(2)]
        for poller in pollers:
            poller.start()
        try:
            summary = campaign.run(workers=2)
        finally:
            stop.set()
            for poller in pollers:
                poller.join(timeout=30)
    assert summary.exit_codes == [0, 0]
    assert_exact_budget(storage_url, STUDIES, n_trials)
    failed = [r for rows in trials_by_study(storage_url).values() for r in rows if r[1] != "COMPLETE"]
    assert failed == [], "a worker error (e.g. 'database is locked') failed a trial"
    assert errors == []
    assert statuses.get(200, 0) >= 10, statuses
    out = capfd.readouterr()
    assert "database is locked" not in out.out + out.err
    assert_no_password(out.out + out.err, storage_url)


# --------------------------------------------------------------------------------- headless browser


def _browser() -> Any:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        skip_or_fail(
            "headless Chromium and chromedriver are needed (apt-get install chromium chromium-driver)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is needed (pip install -e '.[dev]')")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=str(driver)), options=options)


def _wait_for_text(browser: Any, texts: list[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        body = browser.find_element("tag name", "body").text
        if all(t in body for t in texts):
            return body
        time.sleep(0.2)
    raise AssertionError(f"{texts} not all on the page after {timeout}s; it shows:\n{body[:2000]}")


@pytest.mark.browser
@pytest.mark.slow
def test_browser_shows_both_studies_and_learning_curves(tiny_data_dir: Path, tmp_path: Path) -> None:
    browser = _browser()  # first: skips (or fails under CI) before any work when Chromium is missing
    try:
        toml = write_campaign(tmp_path, tiny_data_dir, n_trials=2, epochs=(3,))
        Campaign.from_toml(toml).run(workers=1)
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "ml_rnn_names.cli", "dashboard", str(toml), "--port", str(port)]
        server = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    studies = _get_json(f"{base}/api/studies", timeout=2)["study_summaries"]
                    break
                except (OSError, urllib.error.URLError):
                    assert server.poll() is None, server.communicate()[0]
                    assert time.monotonic() < deadline, "the dashboard did not start"
                    time.sleep(0.2)
            ids = {s["study_name"]: s["study_id"] for s in studies}
            assert sorted(ids) == sorted(STUDIES)

            browser.get(f"{base}/dashboard")
            _wait_for_text(browser, STUDIES)
            browser.save_screenshot(str(tmp_path / "dashboard-studies.png"))

            browser.get(f"{base}/dashboard/studies/{ids['tiny/LSTM']}")
            body = _wait_for_text(browser, ["tiny/LSTM", "Intermediate values", "trial #0", "trial #1"])
            assert "Study Artifacts" in body  # the campaign's artifact store is wired in
            heading = browser.find_element("xpath", "//*[normalize-space(text())='Intermediate values']")
            # the heading just below the fixed app bar, the chart under it
            browser.execute_script("arguments[0].scrollIntoView(); window.scrollBy(0, -90);", heading)
            time.sleep(0.5)
            shot = tmp_path / "dashboard-intermediate-values.png"
            browser.save_screenshot(str(shot))
            assert shot.stat().st_size > 10_000
            print(f"\nscreenshots: {tmp_path}/dashboard-*.png")
        finally:
            server.terminate()  # SIGTERM: the command stops cleanly
            output = server.communicate(timeout=30)[0]
        assert server.returncode == 0, output
        assert "listening on http://127.0.0.1:" in output
        assert "warning" not in output.lower()
    finally:
        browser.quit()
