import asyncio
import re
from html.parser import HTMLParser

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from docs_src.streaming import html_report as snippet
from tests.harness import logged_exceptions, open_stream
from tests.streaming.helpers import served

pytestmark = pytest.mark.anyio
SECRET = "db at 10.0.0.7 refused the connection"


@pytest.fixture
def app():
    return snippet.app


@pytest.fixture
def orders_fail(monkeypatch: pytest.MonkeyPatch):
    """The store fails when the report reaches its orders section."""
    fetch_rows = snippet.fetch_rows

    async def failing(report_id: int, section: snippet.Section) -> list[snippet.Row]:
        if section == "orders":
            raise ConnectionError(SECRET)
        return await fetch_rows(report_id, section)

    monkeypatch.setattr(snippet, "fetch_rows", failing)


class Elements(HTMLParser):
    """The tags, attributes and text a browser would build from the page."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


async def read_as_a_browser(url: str) -> tuple[int, str, Exception | None]:
    """GET /reports/1 from the server at `url`: status, text received, error."""
    received, error = [], None
    async with httpx.AsyncClient(base_url=url) as client:
        try:
            async with client.stream("GET", "/reports/1") as response:
                async for text in response.aiter_text():
                    received.append(text)
        except httpx.HTTPError as exc:
            error = exc
    return response.status_code, "".join(received), error


# --8<-- [start:report]
async def test_the_report_streams_each_section_in_order(running_app):
    async with open_stream(running_app, "/reports/1") as stream:
        parts = [chunk.decode() async for chunk in stream.aiter_bytes()]

    assert stream.status_code == 200
    assert stream.headers["content-type"] == "text/html; charset=utf-8"
    assert len(parts) == 5  # the head, three sections, the footer
    assert re.findall(r"<h2>(\w+)</h2>", "".join(parts)) == [
        "Users",
        "Orders",
        "Analytics",
    ]
    assert parts[1] == (
        "<h2>Users</h2>\n<table><tr>"
        '<td data-label="name">Ann</td><td data-label="role">admin</td>'
        "</tr></table>\n"
    )
    assert parts[-1] == "<footer>End of report</footer>\n"


async def test_the_client_picks_the_sections(client):
    response = await client.get("/reports/1?section=analytics&section=users")

    assert re.findall(r"<h2>(\w+)</h2>", response.text) == ["Analytics", "Users"]


# --8<-- [end:report]
# --8<-- [start:escaping]
SCRIPT = "<script>alert(1)</script>"
TITLE = "</title>" + SCRIPT  # would end the title element, then run
BREAKOUT = 'x" onmouseover="alert(1)'  # would close the attribute, add a handler


async def test_all_data_is_escaped(client, monkeypatch):
    monkeypatch.setitem(snippet.TITLES, 7, TITLE)
    monkeypatch.setitem(snippet.ROWS, (7, "users"), [{BREAKOUT: SCRIPT}])

    response = await client.get("/reports/7?section=users")

    escaped = "&lt;/title&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f"<title>{escaped}</title>" in response.text
    assert f"<h1>{escaped}</h1>" in response.text
    assert 'data-label="x&quot; onmouseover=&quot;alert(1)"' in response.text
    page = Elements(response.text)
    assert "script" not in page.tags
    assert ("data-label", BREAKOUT) in page.attributes  # one attribute, intact
    assert "onmouseover" not in dict(page.attributes)
    assert page.text.count(TITLE) == 2  # shown as text: title, heading
    assert page.text.count(SCRIPT) == 1  # and the cell


# --8<-- [end:escaping]
# --8<-- [start:bad-input]
async def test_bad_input_is_answered_before_the_first_byte(client):
    unknown = await client.get("/reports/99")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/json"
    assert unknown.json() == {"detail": "Report not found"}

    for path in ["/reports/0", "/reports/abc", "/reports/1?section=secrets"]:
        invalid = await client.get(path)
        assert invalid.status_code == 422
        assert invalid.headers["content-type"] == "application/json"


async def test_a_section_list_is_bounded(client, monkeypatch):
    fetched = []
    fetch_rows = snippet.fetch_rows

    async def counted(report_id: int, section: snippet.Section) -> list[snippet.Row]:
        fetched.append(section)
        return await fetch_rows(report_id, section)

    monkeypatch.setattr(snippet, "fetch_rows", counted)

    def asking(times: int) -> str:
        return "/reports/1?" + "&".join(["section=users"] * times)

    flood, four, three = [await client.get(asking(n)) for n in (2000, 4, 3)]

    assert flood.status_code == four.status_code == 422
    assert flood.json()["detail"][0]["type"] == "too_long"
    assert three.status_code == 200
    assert fetched == ["users"] * 3  # only for the three: the others fetched nothing


async def test_a_store_failure_before_the_first_byte_is_a_503(
    client, monkeypatch, caplog
):
    async def store_down(report_id: int) -> str:
        raise ConnectionError(SECRET)

    monkeypatch.setattr(snippet, "fetch_title", store_down)

    response = await client.get("/reports/1")

    assert response.status_code == 503
    assert response.json() == {"detail": "Report store unavailable"}
    assert logged_exceptions(caplog, snippet.logger) == [ConnectionError]


# --8<-- [end:bad-input]
# --8<-- [start:mid-stream]
async def test_a_failure_mid_stream_is_visible_and_breaks_the_transfer(
    orders_fail, caplog
):
    async with served(snippet.app, caplog) as url:
        status, text, error = await read_as_a_browser(url)

    assert status == 200  # sent with the first byte, before the failure
    assert text.endswith(
        "<h2>Users</h2>\n"
        '<table><tr><td data-label="name">Ann</td><td data-label="role">admin</td>'
        "</tr></table>\n"
        '<p class="error">Report incomplete: an error occurred.</p>\n'
    )  # no orders, no analytics, no footer, and no secret
    assert SECRET not in text
    assert isinstance(error, httpx.RemoteProtocolError)  # the body was cut off
    assert logged_exceptions(caplog, snippet.logger) == [ConnectionError]
    assert [(r.name, r.message) for r in caplog.records] == [
        ("docs_src.streaming.html_report", "report 1 failed after the first byte"),
        ("uvicorn.error", "Exception in ASGI application\n"),  # the re-raise
    ]


# --8<-- [end:mid-stream]
async def test_a_client_that_leaves_is_not_an_error(running_app, monkeypatch, caplog):
    async def slow_rows(report_id: int, section: snippet.Section):
        await asyncio.sleep(10)  # longer than any test: the client leaves first
        return []

    monkeypatch.setattr(snippet, "fetch_rows", slow_rows)
    async with open_stream(running_app, "/reports/1") as stream:
        await anext(stream.aiter_bytes())

    assert logged_exceptions(caplog, snippet.logger) == []  # no marker, no log


# --8<-- [start:seed]
async def test_what_the_tutorial_report_does(caplog):
    tutorial = FastAPI()

    async def fetch_section_data(section: str) -> str:
        if section == "orders":
            raise ConnectionError(SECRET)
        return SCRIPT

    @tutorial.get("/reports/1")
    async def generate_report():  # as widely copied, with its data source filled in
        async def report_stream():
            yield b"<html><body><h1>Report</h1>"
            for section in ["users", "orders", "analytics"]:
                data = await fetch_section_data(section)
                yield f"<h2>{section.title()}</h2>".encode()
                yield f"<pre>{data}</pre>".encode()
            yield b"</body></html>"

        return StreamingResponse(report_stream(), media_type="text/html")

    async with served(tutorial, caplog) as url:
        status, text, error = await read_as_a_browser(url)

    assert status == 200
    assert text == f"<html><body><h1>Report</h1><h2>Users</h2><pre>{SCRIPT}</pre>"
    assert "script" in Elements(text).tags  # the data runs as code
    assert isinstance(error, httpx.RemoteProtocolError)
    assert [r.message for r in caplog.records] == ["Exception in ASGI application\n"]


# --8<-- [end:seed]
