import pytest

from docs_src.foundations import sync_vs_async as snippet
from tests.harness import latency_under_load, run_concurrently

DELAY = 0.25
pytestmark = pytest.mark.anyio


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(snippet, "DELAY", DELAY)
    return snippet.app


# --8<-- [start:both-run-at-once]
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sync", {"message": "sync completed"}),
        ("/async", {"message": "async completed"}),
    ],
)
async def test_ten_requests_take_about_one_delay(client, path, body):
    responses, seconds = await run_concurrently(10, lambda: client.get(path))

    assert [r.json() for r in responses] == [body] * 10
    assert seconds < 2 * DELAY  # one after another would take 10 x DELAY


@pytest.mark.parametrize("path", ["/sync", "/async"])
async def test_the_loop_answers_while_they_wait(client, path):
    ping, latency = await latency_under_load(
        lambda: client.get(path), 10, lambda: client.get("/ping"), after=DELAY / 4
    )

    assert ping.json() == {"ping": "pong"}
    assert latency < DELAY / 2  # answered long before the sleepers finish


# --8<-- [end:both-run-at-once]
# --8<-- [start:forty-threads]
async def test_the_41st_def_request_waits_for_a_thread(client):
    _, forty = await run_concurrently(40, lambda: client.get("/sync"))
    _, forty_one = await run_concurrently(41, lambda: client.get("/sync"))

    assert forty < 1.6 * DELAY  # 40 threads: one round
    assert forty_one > 1.9 * DELAY  # the 41st waited for a free thread


async def test_the_loop_still_answers_while_41_wait_for_threads(client):
    ping, latency = await latency_under_load(
        lambda: client.get("/sync"), 41, lambda: client.get("/ping"), after=DELAY / 4
    )

    assert ping.json() == {"ping": "pong"}
    assert latency < DELAY / 2  # async def routes need no thread


# --8<-- [end:forty-threads]
async def test_unknown_path_and_wrong_method(client):
    assert (await client.get("/nope")).status_code == 404
    response = await client.post("/sync")
    assert response.status_code == 405
    assert response.json() == {"detail": "Method Not Allowed"}
