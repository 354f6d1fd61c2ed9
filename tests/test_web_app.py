"""The live view's web application in process, through Starlette's test client: every status code
the routes and the token gate give, and the traversal cases. tests/test_serve.py drives the same
application over a real socket from `edgeleuk run --serve`, and once in a real browser."""

from __future__ import annotations

import json

import numpy as np
import pytest
from starlette.testclient import TestClient  # needs httpx2, in the dev extra

from conftest import LABELS, smear
from edgeleuk.runtime.access import COOKIE, ServeSettings
from edgeleuk.runtime.live import FrameHub, LiveView
from edgeleuk.runtime.quality import assess
from edgeleuk.runtime.records import Control, FrameRecord, FrameResult, Summary
from edgeleuk.runtime.saving import SiteSet
from edgeleuk.runtime.sources import Frame
from edgeleuk.runtime.verdict import Verdict
from edgeleuk.runtime.web_app import create_app

TOKEN = "in-process-token-0123456789"
MODEL = {"name": "test", "file": "m.tflite", "sha256": "0" * 64, "edgeleuk": "0"}
PATHS = ("/", "/api/status", "/frame.jpg", "/stream.mjpg", "/api/log", "/static/app.js")


class Served:
    def __init__(self, view: LiveView) -> None:
        self.view = view
        self.client = TestClient(create_app(view, FrameHub(view)), base_url="http://127.0.0.1")

    def get(self, path: str, token: str | None = TOKEN, **kw):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(path, headers={**headers, **kw.pop("headers", {})}, **kw)

    def post(self, path: str, header: bool = True):
        headers = {"Authorization": f"Bearer {TOKEN}", **({"X-Edgeleuk": "1"} if header else {})}
        return self.client.post(path, headers=headers)

    def show_a_frame(self) -> None:
        image = np.ascontiguousarray(smear("Pre", 1, (224, 224))[:, :, ::-1])
        result = FrameResult(Frame(0, image, "f", "RGB"), FrameRecord("2026-01-01T00:00:00", "f", 0), assess(image),
                             np.array([0.1, 0.1, 0.7, 0.1]), True, 0.5, (0, 0, 224, 224), 1.0)
        summary = Summary(seen=1, accepted=1)
        self.view.frame(result, Verdict(LABELS, 0.8), summary)


def _view(tmp_path, log=None, site=True) -> LiveView:
    saved = SiteSet(tmp_path / "saved", MODEL, None, "s1") if site else None
    return LiveView(ServeSettings("127.0.0.1:0", TOKEN), Control(), LABELS, log, MODEL, site=saved)


@pytest.fixture
def served(tmp_path):
    log = tmp_path / "run.jsonl"
    log.write_text('{"frame": 0}\n{"frame": 1}\n{"frame": 2, "half')  # a run is still writing its last line
    view = _view(tmp_path, log)
    yield Served(view)
    view.shutdown()


def test_every_path_needs_the_token_by_header_query_or_cookie(served):
    for path in PATHS:
        assert served.get(path, token=None).status_code == 401, path
        refused = served.get(path, token="wrong-token-0000000000")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
    assert served.get("/api/status").status_code == 200
    assert served.get(f"/api/status?token={TOKEN}", token=None).status_code == 200
    page = served.get(f"/?token={TOKEN}", token=None)
    cookie = page.headers["set-cookie"].lower()
    assert (
        page.status_code == 200
        and f"{COOKIE}={TOKEN}".lower() in cookie
        and "httponly" in cookie
        and "samesite=strict" in cookie
    )
    assert served.client.get("/api/status", cookies={COOKIE: TOKEN}).status_code == 200


def test_a_host_the_view_is_not_served_under_gets_421(served):
    for path in ("/api/status", "/api/log"):
        answer = served.get(path, headers={"Host": "attacker.example"})
        assert answer.status_code == 421 and "answers to 127.0.0.1, ::1, localhost" in answer.text
    assert served.get("/api/status", headers={"Host": "localhost:8000"}).status_code == 200


def test_state_changes_only_by_post_with_the_header(served):
    control = served.view.control
    assert served.get("/api/stop").status_code == 405
    assert served.post("/api/stop", header=False).status_code == 403 and not control.stopping
    assert served.post("/api/new-sample", header=False).status_code == 403 and not control.take_new_sample()
    answer = served.post("/api/new-sample")
    assert answer.status_code == 202 and answer.json()["action"] == "new sample" and control.take_new_sample()
    assert served.post("/api/stop").status_code == 202 and control.stopping
    assert control.stop_reason == "stopped from the web page"


def test_the_frame_is_503_until_one_is_shown_then_a_jpeg(served):
    assert served.get("/frame.jpg").status_code == 503
    served.show_a_frame()
    picture = served.get("/frame.jpg")
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert picture.content[:2] == b"\xff\xd8" and picture.headers["cache-control"] == "no-store"
    status = served.get("/api/status").json()
    assert status["frame"]["class"] == "Pre" and status["counts"]["answered"] == 1 and status["labels"] == list(LABELS)


def test_save_answers_404_409_and_201(served, tmp_path):
    assert served.post("/api/save/Pre", header=False).status_code == 403
    assert served.post("/api/save/Cat").status_code == 404
    assert served.post("/api/save/Pre").status_code == 409  # no field on screen yet
    served.show_a_frame()
    answer = served.post("/api/save/Pre")
    assert answer.status_code == 201 and (tmp_path / "saved" / answer.json()["file"]).is_file()
    assert served.post("/api/save/..%2f..%2fetc").status_code == 404  # a name the client chose is never a folder


def test_save_without_a_site_set_is_409(tmp_path):
    view = _view(tmp_path, site=False)
    try:
        served = Served(view)
        served.show_a_frame()
        answer = served.post("/api/save/Pre")
        assert answer.status_code == 409 and "--save-frames" in answer.json()["error"]
    finally:
        view.shutdown()


@pytest.mark.parametrize("path", [
    "/api/log/../../../../etc/passwd", "/api/log/%2e%2e/%2e%2e/etc/passwd", "/static/../live.py",
    "/static/..%2f..%2fmanifest.py", "/static/%2e%2e%2fsession.py", "/static/index.html/../../../etc/passwd",
    "/../../etc/passwd", "/static/app.js%00.html", "//etc/passwd", "/static/index.html", "/static/nothing.css",
])
def test_no_path_reaches_a_file_but_the_pages_own(served, path):
    answer = served.get(path)
    assert answer.status_code in (404, 400), (path, answer.status_code)
    assert b"root:" not in answer.content and b"import" not in answer.content


def test_the_pages_own_files_with_their_types(served):
    assert served.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert served.get("/static/style.css").headers["content-type"].startswith("text/css")
    assert served.get("/").headers["content-type"].startswith("text/html")


def test_the_log_is_served_up_to_its_last_complete_line_whatever_the_query(served):
    for query in ("", "?path=/etc/passwd", "?file=../../etc/passwd"):
        answer = served.get("/api/log" + query)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("application/x-ndjson")
        assert [json.loads(line)["frame"] for line in answer.text.splitlines()] == [0, 1]


def test_a_run_without_a_log_answers_404(tmp_path):
    view = _view(tmp_path)
    try:
        answer = Served(view).get("/api/log")
        assert answer.status_code == 404 and "--log" in answer.text
    finally:
        view.shutdown()
