import aiohttp
import pytest
from fastapi import FastAPI, Request

from docs_src.resources import api_gateway_aiohttp as snippet
from tests.harness import app_client, client_for, timed, wait_until

pytestmark = pytest.mark.anyio
SLOW = 2.0  # far beyond TIMEOUT (0.2 s)
ALICE = {"id": 1, "name": "alice"}
ORDERS = [{"id": 10, "total": 25.5}, {"id": 11, "total": 4.0}]
PICKS = ["pen", "book"]
SECRET = "db exploded at 10.0.0.7"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream):
    for name in ("USERS_URL", "ORDERS_URL", "RECOMMENDATIONS_URL"):
        monkeypatch.setattr(snippet, name, upstream.url)
    monkeypatch.setattr(snippet, "TIMEOUT", 0.2)
    upstream.reply("/users/1", json=ALICE)
    upstream.reply("/users/1/orders", json=ORDERS)
    upstream.reply("/users/1/recommendations", json=PICKS)
    return snippet.app


# --8<-- [start:one-session]
async def test_one_session_for_every_request_closed_at_shutdown(
    app, upstream, monkeypatch
):
    upstream.reply("/users/1", json=ALICE, delay=0.05)
    upstream.reply("/users/1/orders", json=ORDERS, delay=0.05)
    upstream.reply("/users/1/recommendations", json=PICKS, delay=0.05)
    seen: list[aiohttp.ClientSession] = []  # the session each request was given

    async def spy(request: Request) -> aiohttp.ClientSession:
        seen.append(await snippet.get_session(request))
        return seen[-1]

    monkeypatch.setitem(app.dependency_overrides, snippet.get_session, spy)
    async with app_client(app) as client:
        responses = [await client.get("/users/1/dashboard") for _ in range(3)]
        assert seen[0].timeout.total == snippet.TIMEOUT  # not the default 300 s
        connector = seen[0].connector

    assert [r.json() for r in responses] == [
        {"user": ALICE, "orders": ORDERS, "recommendations": PICKS, "failed": []}
    ] * 3
    assert upstream.max_in_flight == 3  # the three services at once
    assert len({id(session) for session in seen}) == 1
    assert seen[0].closed  # closed by the lifespan...
    assert connector.closed  # ...with its connector and the connections in it


# --8<-- [end:one-session]
# --8<-- [start:failures]
async def test_partial_results_and_failed_users(client, upstream):
    upstream.reply("/users/1/orders", text=f"<p>{SECRET}</p>", content_type="text/html")
    upstream.reply("/users/1/recommendations", json=PICKS, delay=SLOW)  # too slow
    upstream.reply("/users/2", status=404, json={"detail": "Not Found"})
    upstream.reply("/users/3", status=500, text=SECRET, content_type="text/plain")
    upstream.reply("/users/4", json=ALICE, delay=SLOW)  # too slow
    upstream.reply("/users/5", text=f"<p>{SECRET}</p>", content_type="text/html")
    upstream.reply("/users/6", json=[ALICE])  # JSON, but not a user
    partial = {
        "user": ALICE,
        "orders": None,
        "recommendations": None,
        "failed": ["orders", "recommendations"],  # names only, no reasons
    }
    expected = {
        1: (200, partial),
        2: (404, {"detail": "User not found"}),
        3: (502, {"detail": "The user service failed"}),
        4: (504, {"detail": "The user service timed out"}),
        5: (502, {"detail": "The user service failed"}),
        6: (502, {"detail": "The user service failed"}),
    }

    for user_id, (code, body) in expected.items():
        response, seconds = await timed(client.get(f"/users/{user_id}/dashboard"))

        assert (response.status_code, response.json()) == (code, body)
        assert seconds < SLOW / 2  # at most about the timeout (0.2 s), never 2 s


async def test_when_the_user_service_fails_the_other_calls_are_cancelled(
    app, upstream, monkeypatch
):
    monkeypatch.setattr(snippet, "TIMEOUT", 2.0)
    upstream.reply("/users/1", status=503, json={"error": SECRET})
    upstream.reply("/users/1/orders", json=ORDERS, delay=3.0)
    upstream.reply("/users/1/recommendations", json=PICKS, delay=3.0)

    async with app_client(app) as client:
        response, seconds = await timed(client.get("/users/1/dashboard"))
        await wait_until(lambda: len(upstream.abandoned) == 2, timeout=1.0)

    assert response.status_code == 502
    assert seconds < 1.0  # no waiting for the slow calls (3 s) or the timeout (2 s)
    assert sorted(upstream.abandoned) == ["/users/1/orders", "/users/1/recommendations"]


async def test_a_read_timeout_is_a_504_too(app, upstream, monkeypatch):
    upstream.reply("/users/1", json=ALICE, delay=SLOW)
    timeout = aiohttp.ClientTimeout(sock_read=0.1)  # raises ServerTimeoutError

    async with aiohttp.ClientSession(timeout=timeout) as session:
        overrides = app.dependency_overrides
        monkeypatch.setitem(overrides, snippet.get_session, lambda: session)
        async with app_client(app) as client:
            response = await client.get("/users/1/dashboard")

    assert response.status_code == 504  # a ClientError too, but caught as a timeout
    assert response.json() == {"detail": "The user service timed out"}


# --8<-- [end:failures]
# --8<-- [start:seed]
async def test_what_the_tutorial_gateway_does(upstream):
    tutorial = FastAPI()

    @tutorial.get("/aggregate")
    async def aggregate():  # as widely copied: a session per request, no timeout
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{upstream.url}/users") as response,
        ):
            users = await response.json()
        return {"users": users[:5]}

    async with client_for(tutorial) as client:  # the route's exceptions reach the test
        upstream.reply(
            "/users", status=502, text="<h1>Bad</h1>", content_type="text/html"
        )
        with pytest.raises(aiohttp.ContentTypeError, match="unexpected mimetype"):
            await client.get("/aggregate")

        upstream.reply("/users", status=429, json={"error": "slow down"})
        with pytest.raises(TypeError, match="unhashable type: 'slice'"):
            await client.get("/aggregate")

    async with aiohttp.ClientSession() as session:
        assert session.timeout.total == 300  # the default: five minutes


# --8<-- [end:seed]
# --8<-- [start:unclosed]
async def test_an_unclosed_session_is_a_resource_warning():
    def leak() -> None:
        aiohttp.ClientSession()  # never closed

    with pytest.warns(ResourceWarning, match="Unclosed client session"):
        leak()


# --8<-- [end:unclosed]
async def test_a_bad_id_is_422_and_calls_nothing(monkeypatch, unreachable_url):
    # a call would be refused (502), so a 422 proves none was made
    for name in ("USERS_URL", "ORDERS_URL", "RECOMMENDATIONS_URL"):
        monkeypatch.setattr(snippet, name, unreachable_url)
    async with app_client(snippet.app) as client:
        for user_id in ["0", "-1", "abc", "1.5"]:
            response = await client.get(f"/users/{user_id}/dashboard")

            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["path", "user_id"]
        unreachable = await client.get("/users/1/dashboard")

    assert unreachable.status_code == 502  # the control: a real call fails as 502
    assert unreachable.json() == {"detail": "The user service failed"}


def test_aiohttp_timeouts_are_timeout_errors_and_client_errors():
    assert issubclass(aiohttp.ServerTimeoutError, TimeoutError)
    assert issubclass(aiohttp.ServerTimeoutError, aiohttp.ClientError)
    assert issubclass(aiohttp.ContentTypeError, aiohttp.ClientError)
