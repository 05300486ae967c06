"""The web app through Starlette's TestClient: submissions, the review queue, safety, alerts.
(The same flow in a real browser: tests/test_web_browser.py.)"""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from reid.web.app import create_app  # noqa: E402
from reid.web.auth import add_user  # noqa: E402
from reid.web.service import ServeSettings, Service  # noqa: E402
from reid.web.uploads import Limits  # noqa: E402

PASSWORD = "correct horse battery"


@pytest.fixture()
def web(web_gallery, tmp_path):
    """(client, service, info): a fresh copy of the web gallery served with no worker threads
    (tests drive the worker by hand with ``identify``), one reviewer ``ana``."""
    gallery = tmp_path / "gallery"
    shutil.copytree(web_gallery["dir"], gallery)
    sites = tmp_path / "sites.csv"
    sites.write_text(
        "site,latitude,longitude,catchment\n"
        "Upper pool,35.000000,133.000000,Asahi\n"
        "Weir,35.000900,133.000000,Asahi\n"  # 100 m north of Upper pool
        "Far reach,35.090000,133.000000,Asahi\n"  # 10 km north
        "Other river,35.000000,133.050000,Takahashi\n"
    )
    settings = ServeSettings(gallery_dir=gallery, model=web_gallery["run"], workers=0,
                             device="cpu", sites=sites, alert_km=2.0,
                             limits=Limits(max_photos=3, max_bytes=300_000))  # fmt: skip
    service = Service(settings)
    add_user(service.db, "ana", PASSWORD)
    app = create_app(settings, service=service)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, service, web_gallery


def csrf(client: TestClient, path: str = "/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def submit(client: TestClient, files: list[tuple[str, bytes]], **fields: str):
    data = {"csrf_token": csrf(client), **fields}
    return client.post("/submit", data=data, follow_redirects=False,
                       files=[("photos", (n, b, "image/jpeg")) for n, b in files])  # fmt: skip


def login(client: TestClient, name: str = "ana", password: str = PASSWORD):
    token = csrf(client, "/login")
    return client.post("/login", data={"csrf_token": token, "name": name,
                                       "password": password}, follow_redirects=False)  # fmt: skip


def identify(client: TestClient) -> int:
    svc = client.app.state.service
    with svc.open_gallery() as g:
        return client.app.state.worker.run_once(g)


def test_submit_identify_review_confirm_and_new(web):
    client, svc, info = web
    r = submit(client, [("known.jpg", info["known"].read_bytes())], site="Upper pool",
               observer="Kenji", contact="kenji@example.org")  # fmt: skip
    assert r.status_code == 303, r.text
    receipt = r.headers["location"]
    waiting = client.get(receipt).text
    assert "waiting for identification" in waiting and 'http-equiv="refresh"' in waiting
    r2 = submit(client, [("new.jpg", info["unknown"].read_bytes())], date="2026-06-01")
    assert identify(client) == 2
    status = client.get(receipt, params={"format": "json"}).json()["photos"][0]
    assert status["status"] == "review" and status["text"] == "matched, awaiting review"
    assert 'http-equiv="refresh"' not in client.get(receipt).text  # nothing left to wait for
    assert client.get("/review", follow_redirects=False).status_code == 303  # not logged in
    assert login(client).status_code == 303
    queue = client.get("/review").text
    ids = [int(i) for i in re.findall(r'data-photo="(\d+)"', queue)]
    assert sorted(ids) == [1, 2]
    page = client.get("/review/1").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert info["known_individual"] in page
    done = client.post("/review/1", data={"csrf_token": token, "action": "confirm"},
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303, done.text
    done = client.post("/review/2", data={"csrf_token": token, "action": "new",
                                          "individual": "JGS-web-1"},
                       follow_redirects=False)  # fmt: skip
    assert done.status_code == 303, done.text
    with svc.open_gallery() as g:
        names = {s.id: s.num_images for s in g.individuals()}
        audit = g.audit_log()
    assert names["JGS-web-1"] == 1
    enrolls = [a for a in audit if a["action"] == "enroll" and a["user"] == "ana"]
    assert len(enrolls) == 2
    assert "confirmed by a reviewer" in client.get(receipt).text
    assert "recorded as a new individual: JGS-web-1" in client.get(r2.headers["location"]).text
    for kind in ("sheet.png", "gradcam.png"):
        pic = client.get(f"/photos/1/{kind}")
        assert pic.status_code == 200 and pic.content[:4] == b"\x89PNG"


def _jpeg(size: tuple[int, int] = (64, 64), noise: bool = False, exif: bytes = b"") -> bytes:
    import numpy as np

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8) if noise else None
    img = Image.fromarray(pixels) if noise else Image.new("RGB", size, (90, 120, 60))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def _stored(svc: Service) -> tuple[int, list[Path]]:
    subs = svc.db.query("SELECT COUNT(*) AS n FROM submissions")[0]["n"]
    return subs, [p for p in svc.uploads_dir.iterdir() if not p.name.startswith(".")]


def test_reviewer_routes_need_a_login(web):
    client, _, _ = web
    for path in ("/review", "/review/1", "/individuals", "/alerts", "/alerts.json",
                 "/photos/1/image", "/gallery/images/1"):  # fmt: skip
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next="), path
    r = client.post("/review/1", data={"action": "confirm"}, follow_redirects=False)
    assert r.status_code == 401
    wrong = login(client, password="not the password")
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
    assert "reid_session" not in wrong.cookies
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_forms_without_their_csrf_token_are_refused(web):
    client, svc, info = web
    client.get("/")  # the visitor has the CSRF cookie, but the form lacks the token
    photo = [("photos", ("a.jpg", info["known"].read_bytes(), "image/jpeg"))]
    r = client.post("/submit", files=photo, data={"site": "Weir"})
    assert r.status_code == 403 and "form has expired" in r.text
    r = client.post("/submit", files=photo, data={"csrf_token": "forged"})
    assert r.status_code == 403
    assert _stored(svc) == (0, [])
    r = client.post("/login", data={"name": "ana", "password": PASSWORD})
    assert r.status_code == 403
    assert login(client).status_code == 303
    r = client.post("/review/1", data={"action": "reject", "reason": "x"})
    assert r.status_code == 403
    # the anonymous token is not the session's: a logged-in form needs the session's own
    r = client.post("/review/1", data={"action": "reject", "reason": "x",
                                       "csrf_token": csrf(client, "/login")})  # fmt: skip
    assert r.status_code in (403, 409)


def _bomb() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buf, "PNG")  # 100 MP in a few kB
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("report.jpg", lambda: b"%PDF-1.4\n" + b"x" * 500, "not an image file"),
        ("empty.jpg", lambda: b"", "empty (0 bytes)"),
        ("bomb.png", _bomb, "decompression bomb"),
        ("huge.jpg", lambda: _jpeg((700, 700), noise=True), "more than the 0.29 MB"),
        ("../../x.jpg", lambda: _jpeg(), "contains a folder path"),
        ("pic.gif", lambda: _gif(), "not a JPEG, PNG or HEIC"),
    ],
)
def test_bad_uploads_are_refused_by_name_and_nothing_is_stored(web, name, make, reason):
    client, svc, _ = web
    data = make()
    r = submit(client, [(name, data)])
    assert r.status_code == 400, (r.status_code, r.text[:300])
    text = r.text.replace("&#39;", "'")
    assert reason in text and "is refused" in text
    assert _stored(svc) == (0, [])
    assert not list(svc.uploads_dir.glob("../**/x.jpg"))


def _gif() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, "GIF")
    return buf.getvalue()


def test_size_and_count_limits(web):
    client, svc, info = web
    big = b"0" * (svc.settings.limits.max_request_bytes + 1)
    r = client.post("/submit", content=big, headers={"content-type": "multipart/form-data; "
                                                     "boundary=x"})  # fmt: skip
    assert r.status_code == 413 and "larger than" in r.text
    photos = [(f"p{i}.jpg", _jpeg((64 + i, 64))) for i in range(4)]
    r = submit(client, photos)
    assert r.status_code == 400 and "At most 3 photos" in r.text
    assert _stored(svc) == (0, [])


def test_a_bad_file_in_a_submission_is_listed_and_the_rest_is_stored(web):
    client, svc, info = web
    r = submit(client, [("good.jpg", info["known"].read_bytes()), ("bad.jpg", b"")])
    assert r.status_code == 303
    page = client.get(r.headers["location"]).text.replace("&#39;", "'")
    assert "good.jpg" in page and "File 'bad.jpg' is refused: it is empty" in page
    assert _stored(svc)[0] == 1 and len(_stored(svc)[1]) == 1


def test_sql_and_markup_in_fields_are_stored_literally(web):
    client, svc, info = web
    evil = "Robert'); DROP TABLE submissions;--"
    note = "<script>alert(1)</script>"
    r = submit(client, [("a.jpg", info["known"].read_bytes())], observer=evil, notes=note)
    assert r.status_code == 303
    row = svc.db.query("SELECT observer, notes FROM submissions")[0]
    assert row == {"observer": evil, "notes": note}
    identify(client)
    login(client)
    page = client.get("/review/1").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and note not in page


def test_exif_date_and_place_fill_what_the_form_leaves_blank(web):
    client, svc, _ = web
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (35.0, 30.0, 0.0), 3: "E", 4: (133.0, 15.0, 0.0)}
    exif[0x8769] = {36867: "2025:06:01 21:14:03"}
    r = submit(client, [("exif.jpg", _jpeg(exif=exif.tobytes()))])
    assert r.status_code == 303
    row = svc.db.query("SELECT date, latitude, longitude FROM photos")[0]
    assert row["date"] == "2025-06-01"
    assert row["latitude"] == pytest.approx(35.5) and row["longitude"] == pytest.approx(133.25)
    r = submit(client, [("typed.jpg", _jpeg((65, 64), exif=exif.tobytes()))], date="2026-01-02",
               latitude="34.1", longitude="132.9")  # fmt: skip
    row = svc.db.query("SELECT date, latitude, longitude FROM photos WHERE id = 2")[0]
    assert row == {"date": "2026-01-02", "latitude": 34.1, "longitude": 132.9}
    r = submit(client, [("c.jpg", _jpeg((66, 64)))], latitude="95", longitude="10")
    assert r.status_code == 400 and "outside the range of latitude" in r.text


def test_heic_is_accepted_by_content(web):
    client, svc, info = web
    pillow_heif = pytest.importorskip("pillow_heif")
    buf = io.BytesIO()
    try:
        pillow_heif.from_pillow(Image.open(info["known"])).save(buf, quality=90)
    except Exception as exc:  # a pillow-heif build without an encoder
        pytest.skip(f"pillow-heif cannot write HEIC here: {exc}")
    r = submit(client, [("IMG_0001.HEIC", buf.getvalue())])
    assert r.status_code == 303
    assert svc.db.query("SELECT format, stored_name FROM photos")[0]["format"] == "HEIF"
    assert identify(client) == 1
    assert svc.db.query("SELECT status FROM photos")[0]["status"] == "review"
    login(client)
    shown = client.get("/photos/1/image")  # browsers cannot show HEIC: a JPEG copy is served
    assert shown.status_code == 200 and shown.content[:3] == b"\xff\xd8\xff"


def test_an_unusable_photo_is_reported_and_its_batch_goes_on(web):
    client, svc, info = web
    submit(client, [("a.jpg", info["known"].read_bytes())])
    submit(client, [("b.jpg", info["unknown"].read_bytes())])
    first = svc.db.photo(1)
    svc.upload_path(first["stored_name"]).unlink()  # the disk lost it
    assert identify(client) == 2
    rows = {r["id"]: r for r in svc.db.query("SELECT id, status, reason FROM photos")}
    assert rows[1]["status"] == "unusable" and "not found" in rows[1]["reason"]
    assert rows[2]["status"] == "review"


def test_review_actions_that_cannot_apply_say_why(web):
    client, svc, info = web
    submit(client, [("new.jpg", info["unknown"].read_bytes())])
    identify(client)
    login(client)
    token = csrf(client, "/review/1")

    def act(**form):
        r = client.post("/review/1", data={"csrf_token": token, **form})
        return r.status_code, r.text.replace("&#39;", "'")

    code, text = act(action="assign", individual="NOBODY")
    assert code == 409 and "Individual 'NOBODY' is not in the gallery" in text
    code, text = act(action="new", individual=info["known_individual"])
    assert code == 409 and "already exists" in text
    code, text = act(action="reject", reason=" ")
    assert code == 409 and "Say why" in text
    code, _ = act(action="reject", reason="blurred")
    assert code == 200  # followed to the queue
    code, text = act(action="reject", reason="again")
    assert code == 409 and "not awaiting review (it is done, reject by ana)" in text


def test_server_errors_show_a_sentence_not_a_trace(web, monkeypatch):
    client, svc, _ = web
    login(client)

    def broken(*a, **k):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(svc.db, "pending_review", broken)
    r = client.get("/review")
    assert r.status_code == 500
    assert "secret internal detail" not in r.text and "Traceback" not in r.text
    assert "Something went wrong" in r.text


def _assign(client, svc, path: Path, site: str, individual: str) -> list[str]:
    before = len(svc.db.alerts())
    r = submit(client, [(path.name, path.read_bytes())], site=site)
    assert r.status_code == 303
    identify(client)
    photo_id = max(p["id"] for p in svc.db.query("SELECT id FROM photos"))
    token = csrf(client, f"/review/{photo_id}")
    r = client.post(f"/review/{photo_id}", data={"csrf_token": token, "action": "assign",
                                                "individual": individual})  # fmt: skip
    assert r.status_code == 200, r.text
    return [a["kind"] for a in svc.db.alerts()[: len(svc.db.alerts()) - before]]


def test_translocation_alert_at_10_km_and_none_at_100_m(web, tiny_data):
    client, svc, info = web
    who = info["known_individual"]
    photos = sorted(p for p in (tiny_data.parent / "images" / who).glob("*.jpg"))
    enrolled = {im.sha256 for im in svc.open_gallery().images(who)}
    import hashlib

    fresh = [p for p in photos if hashlib.sha256(p.read_bytes()).hexdigest() not in enrolled]
    assert len(fresh) >= 4
    login(client)
    assert _assign(client, svc, fresh[0], "Upper pool", who) == []  # first placed sighting
    assert _assign(client, svc, fresh[1], "Weir", who) == []  # 100 m away
    assert _assign(client, svc, fresh[2], "Far reach", who) == ["distance"]  # 10 km
    kinds = _assign(client, svc, fresh[3], "Other river", who)  # 4.6 km, another catchment
    assert sorted(kinds) == ["catchment", "distance"]
    alerts = client.get("/alerts.json").json()
    assert any("9.9 km from its nearest earlier sighting (Weir)" in a["message"] for a in alerts)
    csv_text = client.get("/alerts.csv").text
    assert csv_text.splitlines()[0] == "id,created_at,kind,individual,photo_id,message"
    assert len(csv_text.strip().splitlines()) == 4
    page = client.get(f"/individuals/{who}")
    assert page.status_code == 200 and "Far reach" in page.text
    assert client.get(f"/individuals/{who}/map.png").content[:4] == b"\x89PNG"


def test_distances_and_hybrid_alerts_by_hand():
    from reid.web.alerts import Sites, distance_km, hybrid_alert, place_alerts

    assert distance_km((0.0, 0.0), (1.0, 0.0)) == pytest.approx(111.195, abs=0.01)
    sites = Sites({"A": (35.0, 133.0)}, {})
    assert place_alerts("x", "35.0009, 133.0", ["A"], sites, 1.0) == []
    far = place_alerts("x", "35.09, 133.0", ["A", ""], sites, 1.0)
    assert [a.kind for a in far] == ["distance"] and far[0].details["distance_km"] == 10.008
    assert place_alerts("x", "", ["A"], sites, 1.0) == []  # no place: nothing to compare
    assert hybrid_alert("x", {"native": 0.3, "hybrid": 0.7}, "hybrid", 0.5).kind == "hybrid"
    assert hybrid_alert("x", {"native": 0.6, "hybrid": 0.4}, "hybrid", 0.5) is None


def test_proposed_group_gathers_other_pending_newcomer_photos(web):
    import numpy as np

    from reid.web.review import proposed_group

    client, svc, info = web
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        submit(client, [(name, _jpeg((64 + len(svc.db.query("SELECT id FROM photos")), 64)))])
    v = np.array([1, 0, 0], np.float32)
    far = np.array([0, 1, 0], np.float32)
    for pid, vec, new in ((1, v, True), (2, v * 0.99 + far * 0.1, True), (3, far, True),
                          (4, v, False)):  # fmt: skip
        svc.db.finish(pid, result={"is_new": new, "score": 0.1, "threshold": 0.5},
                      vector=vec / np.linalg.norm(vec), margin=0.4)  # fmt: skip
    with svc.open_gallery() as g:  # calibrated for the cosine only: pairs scored by it
        assert proposed_group(svc, 1, g) == ([2], "cosine")
        assert proposed_group(svc, 3, g) == ([], "cosine")
        assert proposed_group(svc, 4, g) == ([], "")  # matched to a known animal: no group
    login(client)
    page = client.get("/review/1").text
    assert 'name="group" value="2"' in page and 'value="3"' not in page


def test_rename_and_merge_go_through_the_gallery_and_its_audit_log(web):
    client, svc, info = web
    submit(client, [("a.jpg", info["known"].read_bytes())])
    identify(client)
    login(client)
    token = csrf(client, "/review/1")
    client.post("/review/1", data={"csrf_token": token, "action": "confirm"})
    who = info["known_individual"]
    with svc.open_gallery() as g:
        before = {s.id: s.num_images for s in g.individuals()}
    target = next(n for n in sorted(before) if n != who)
    r = client.post(
        f"/individuals/{who}",
        data={"csrf_token": token, "action": "merge", "other": target},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/individuals/{target}"
    r = client.post(
        f"/individuals/{target}",
        data={"csrf_token": token, "action": "rename", "other": "Hanako"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with svc.open_gallery() as g:
        after = {s.id: s.num_images for s in g.individuals()}
        actions = [(a["action"], a["user"]) for a in g.audit_log()][-2:]
    assert after["Hanako"] == before[who] + before[target] and who not in after
    assert actions == [("merge", "ana"), ("rename", "ana")]
    assert svc.db.photo(1)["individual"] == "Hanako"  # the receipt follows the animal
    r = client.post(
        "/individuals/Hanako", data={"csrf_token": token, "action": "merge", "other": "NOBODY"}
    )
    assert r.status_code == 409 and "NOBODY" in r.text


def test_users_add_and_cookie_flags(web_gallery, tmp_path):
    from typer.testing import CliRunner

    from reid.cli.main import app

    gallery = tmp_path / "gallery"
    shutil.copytree(web_gallery["dir"], gallery)
    runner = CliRunner()
    r = runner.invoke(app, ["users", "add", str(gallery), "kim", "--password-stdin"],
                      input="short\n")  # fmt: skip
    assert r.exit_code == 1 and "too short" in r.output
    r = runner.invoke(app, ["users", "add", str(gallery), "kim", "--password-stdin"],
                      input=PASSWORD + "\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["users", "add", str(tmp_path / "nothing"), "kim"])
    assert r.exit_code == 1 and "is not a gallery" in r.output
    settings = ServeSettings(gallery_dir=gallery, model=web_gallery["run"], workers=0,
                             device="cpu")  # fmt: skip
    with TestClient(create_app(settings)) as client:
        r = login(client, "kim")
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert client.get("/review").status_code == 200
        stored = client.app.state.service.db.user("kim")["password_hash"]
        assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_a_hybrid_screen_raises_an_alert_when_identified(web, monkeypatch):
    client, svc, info = web
    from reid.web import worker as worker_mod

    submit(client, [("a.jpg", info["known"].read_bytes())])
    svc.settings.hybrid_level = 0.6

    def fake_screen(rows, screener, progress):  # the screen run's answer, without training one
        for r in rows:
            r.screen = {"native": 0.2, "hybrid": 0.8}

    monkeypatch.setattr("reid.pipeline._screen_rows", fake_screen)
    svc.screener = object()
    assert identify(client) == 1
    alerts = svc.db.alerts()
    assert [a["kind"] for a in alerts] == ["hybrid"] and "0.80" in alerts[0]["message"]
    assert worker_mod.margin_of({"score": 0.5, "threshold": 0.7}) == pytest.approx(0.2)


def test_repeated_failed_logins_are_throttled_per_name_and_address(web):
    from reid.web.auth import LoginThrottle

    client, svc, _ = web
    for _ in range(5):
        assert login(client, password="guess " * 3).status_code == 401
    r = login(client)  # even the right password waits now, from this address
    assert r.status_code == 429 and "Too many failed logins" in r.text
    throttle = LoginThrottle(limit=3, per_address=5)
    assert [throttle.attempt("ana", "10.0.0.9") for _ in range(4)] == [True] * 3 + [False]
    assert throttle.attempt("ana", "10.0.0.7")  # a stranger's guesses do not lock ana out
    throttle.succeeded("ana", "10.0.0.7")
    assert [throttle.attempt(f"u{i}", "10.0.0.9") for i in range(3)] == [True, True, False]


def test_a_password_reset_ends_old_sessions(web):
    client, svc, _ = web
    login(client)
    assert client.get("/review", follow_redirects=False).status_code == 200
    add_user(svc.db, "ana", "a brand new password")
    assert client.get("/review", follow_redirects=False).status_code == 303


def test_streamed_oversize_body_and_odd_ids_get_their_status(web):
    client, svc, _ = web

    def chunks():
        for _ in range(40):
            yield b"0" * 64 * 1024

    r = client.post(
        "/submit", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 413 and "larger than" in r.text
    login(client)
    huge = "99999999999999999999"
    for path in (f"/review/{huge}", "/review/abc", f"/photos/{huge}/image",
                 f"/review?done={huge}"):  # fmt: skip
        r = client.get(path)
        assert r.status_code in (200, 404) and "Traceback" not in r.text, path


def test_confirm_after_a_rename_is_refused_and_an_interrupted_decision_can_be_retried(
    web, monkeypatch
):
    client, svc, info = web
    for name in ("a.jpg", "b.jpg"):
        photo = info["known"] if name == "a.jpg" else info["unknown"]
        submit(client, [(name, photo.read_bytes())])
    identify(client)
    login(client)
    token = csrf(client, "/review/1")
    who = info["known_individual"]
    with svc.open_gallery() as g:
        g.rename(who, "Renamed")
    r = client.post("/review/1", data={"csrf_token": token, "action": "confirm"})
    assert r.status_code == 409 and "no longer in the gallery" in r.text
    calls = []

    def crash_once(*args, **kwargs):  # the gallery took the photo; then the process "died"
        calls.append(1)
        raise RuntimeError("power cut")

    original = svc.db.record_review
    monkeypatch.setattr(svc.db, "record_review", crash_once)
    form = {"csrf_token": token, "action": "assign", "individual": "Renamed"}
    assert client.post("/review/1", data=form).status_code == 500
    monkeypatch.setattr(svc.db, "record_review", original)
    r = client.post("/review/1", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text  # the retry records what the gallery already holds
    with svc.open_gallery() as g:
        assert sum(1 for im in g.images("Renamed") if im.sighting.startswith("web-")) == 1
    r = client.post(
        "/individuals/Renamed", data={"csrf_token": token, "action": "merge", "other": "NOBODY"}
    )
    assert r.status_code == 409 and str(svc.settings.gallery_dir) not in r.text


def test_alerts_csv_cells_are_not_formulas(web):
    client, svc, _ = web
    svc.db.add_alert("hybrid", '=HYPERLINK("http://x")', None, "-2+3 looks like a sum")
    login(client)
    line = client.get("/alerts.csv").text.splitlines()[1]
    assert "'=HYPERLINK" in line and "'-2+3" in line


def test_a_new_individual_takes_the_ticked_photos_of_its_proposed_group(web, tiny_data):
    client, svc, info = web
    newcomer = sorted((info["unknown"].parent).glob("*.jpg"))[:1] + [info["known"]]
    for p in newcomer:
        submit(client, [(p.name, p.read_bytes())])
    identify(client)
    for pid in (1, 2):  # as if the machine had called both NEW
        photo = svc.db.photo(pid)
        svc.db.finish(pid, result={**photo["result"], "is_new": True}, vector=photo["vector"],
                      margin=0.1)  # fmt: skip
    login(client)
    token = csrf(client, "/review/1")
    r = client.post("/review/1", data={"csrf_token": token, "action": "new",
                                       "individual": "Pair-1", "group": ["2"]},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text
    with svc.open_gallery() as g:
        assert len(g.images("Pair-1")) == 2
    assert [svc.db.photo(i)["individual"] for i in (1, 2)] == ["Pair-1", "Pair-1"]
    assert 'id="empty"' in client.get("/review").text  # both reviewed by one decision


def test_a_server_failure_is_retried_later_then_reported(web, monkeypatch):
    client, svc, info = web
    submit(client, [("a.jpg", info["known"].read_bytes())])

    def broken(*args, **kwargs):  # e.g. the disk is full or the gallery is locked
        raise OSError("No space left on device: /secret/path")

    monkeypatch.setattr("reid.pipeline.match_photos", broken)
    for attempt in (1, 2):
        assert identify(client) == 1
        row = svc.db.query("SELECT status, attempts, retry_at FROM photos")[0]
        assert row["status"] == "queued" and row["attempts"] == attempt and row["retry_at"]
        assert identify(client) == 0  # not before its time
        with svc.db.transaction() as conn:
            conn.execute("UPDATE photos SET retry_at = '2000-01-01T00:00:00+00:00'")
    assert identify(client) == 1
    receipt = svc.db.query("SELECT submission_id FROM photos")[0]["submission_id"]
    photo = client.get(f"/receipt/{receipt}", params={"format": "json"}).json()["photos"][0]
    assert photo["status"] == "unusable" and "failed on the server" in photo["text"]
    assert "/secret/path" not in photo["text"]
