import httpx
import pytest

from docs_src.resources import api_gateway as snippet
from tests.harness import app_client, logged_exceptions, timed, wait_until

pytestmark = pytest.mark.anyio
SLOW = 2.0  # far beyond TIMEOUT (0.2 s)
ALICE = {"id": 1, "name": "alice"}
ORDERS = [{"id": 10, "total": 25.5}, {"id": 11, "total": 4.0}]
PICKS = ["pen", "book"]
SECRET = "db exploded at 10.0.0.7"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream):
    for name in ("USERS_URL", "ORDERS_URL", "RECOMMENDATIONS_URL"):
        monkeypatch.setattr(snippet, name, upstream.url)  # three services, one fake
    monkeypatch.setattr(snippet, "TIMEOUT", 0.2)
    upstream.reply("/users/1", json=ALICE)
    upstream.reply("/users/1/orders", json=ORDERS)
    upstream.reply("/users/1/recommendations", json=PICKS)
    return snippet.app


# --8<-- [start:all-good]
async def test_the_three_services_are_called_at_once(client, upstream):
    upstream.reply("/users/1", json=ALICE, delay=0.05)
    upstream.reply("/users/1/orders", json=ORDERS, delay=0.05)
    upstream.reply("/users/1/recommendations", json=PICKS, delay=0.05)

    response = await client.get("/users/1/dashboard")

    assert response.status_code == 200
    assert response.json() == {
        "user": ALICE,
        "orders": ORDERS,
        "recommendations": PICKS,
        "failed": [],
    }
    assert upstream.max_in_flight == 3  # all three calls were in flight together


# --8<-- [end:all-good]
# --8<-- [start:partial]
async def test_a_failed_optional_service_gives_a_partial_result(
    client, upstream, caplog
):
    upstream.reply("/users/1/orders", status=500, json={"error": SECRET})
    upstream.reply("/users/1/recommendations", json=PICKS, delay=SLOW)  # too slow

    response, seconds = await timed(client.get("/users/1/dashboard"))

    assert response.status_code == 200
    assert response.json() == {
        "user": ALICE,
        "orders": None,
        "recommendations": None,
        "failed": ["orders", "recommendations"],
    }
    assert seconds < SLOW / 2  # about the timeout (0.2 s), not the slow service's 2 s
    assert logged_exceptions(caplog, snippet.logger) == [httpx.HTTPStatusError]
    assert "/users/1/recommendations timed out" in caplog.text


# --8<-- [end:partial]
# --8<-- [start:required]
async def test_a_failed_user_service_fails_the_request(client, upstream):
    upstream.reply("/users/2", status=404, json={"detail": "Not Found"})
    upstream.reply("/users/3", status=503, json={"error": SECRET})
    upstream.reply("/users/4", text=f"<p>{SECRET}</p>", content_type="text/html")
    upstream.reply("/users/5", json=[ALICE])  # JSON, but not a user
    upstream.reply("/users/6", json=ALICE, delay=SLOW)  # slower than the timeout
    expected = {
        2: (404, "User not found"),
        3: (502, "The user service failed"),
        4: (502, "The user service failed"),
        5: (502, "The user service failed"),
        6: (504, "The user service timed out"),
    }

    for user_id, (code, detail) in expected.items():
        response = await client.get(f"/users/{user_id}/dashboard")

        assert response.status_code == code
        assert response.json() == {"detail": detail}


# --8<-- [end:required]
# --8<-- [start:cancelled]
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


# --8<-- [end:cancelled]
async def test_nan_or_infinity_in_an_optional_answer_is_a_failure(client, upstream):
    for number in ["NaN", "Infinity", "1e309"]:
        upstream.reply("/users/1/orders", text=f'[{{"id": 10, "total": {number}}}]')

        response = await client.get("/users/1/dashboard")

        assert response.status_code == 200
        assert response.json()["orders"] is None  # not passed on as null totals
        assert response.json()["failed"] == ["orders"]


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


async def test_one_client_with_explicit_limits_closed_at_shutdown():
    async with snippet.lifespan(snippet.app) as state:
        http = state["http"]
        assert http.timeout == httpx.Timeout(snippet.TIMEOUT)
        assert not http.is_closed

    assert http.is_closed
