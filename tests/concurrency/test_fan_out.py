import asyncio

import httpx
import pytest
from fastapi import FastAPI

from docs_src.concurrency import fan_out as snippet
from tests.harness import app_client, client_for, logged_exceptions, timed, wait_until

DELAY = 0.2
pytestmark = pytest.mark.anyio
ROUTES = ["/gather/users/7", "/taskgroup/users/7"]
PROFILE, POSTS, COMMENTS = "/users/7/profile", "/users/7/posts", "/users/7/comments"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, upstream):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", upstream.url)
    return snippet.app


def fetches_running() -> list[asyncio.Task]:
    """The snippet's `fetch` calls that are still running, as tasks."""
    return [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "fetch"]


# --8<-- [start:at-once]
@pytest.mark.parametrize("route", ROUTES)
async def test_three_calls_run_at_once_and_land_under_their_names(
    client, upstream, route
):
    upstream.reply(PROFILE, json={"name": "alice"}, delay=DELAY)
    upstream.reply(POSTS, json=[{"id": 1}], delay=DELAY)
    upstream.reply(COMMENTS, json=[], delay=DELAY)

    response, seconds = await timed(client.get(route))

    assert response.status_code == 200
    assert response.json() == {
        "profile": {"name": "alice"},
        "posts": [{"id": 1}],
        "comments": [],
    }
    assert upstream.max_in_flight == 3  # the upstream saw all three at once
    assert seconds < 3 * DELAY  # one after another, they would take 3 * DELAY


# --8<-- [end:at-once]
# --8<-- [start:gather-fails]
async def test_with_gather_the_other_calls_outlive_the_error(client, upstream):
    upstream.reply(PROFILE, status=500, text="<h1>boom</h1>", delay=DELAY / 3)
    upstream.reply(POSTS, json=[], delay=DELAY)
    upstream.reply(COMMENTS, json=[], delay=DELAY)

    response = await client.get("/gather/users/7")
    orphans = fetches_running()

    assert response.status_code == 502
    assert response.json() == {"detail": "Upstream failed"}
    assert len(orphans) == 2  # the client has its answer; two calls still run
    await asyncio.wait(orphans)
    assert [task.result() for task in orphans] == [[], []]  # finished, for no one
    assert upstream.abandoned == []


# --8<-- [end:gather-fails]
# --8<-- [start:taskgroup-fails]
async def test_a_task_group_cancels_the_other_calls(client, upstream):
    upstream.reply(PROFILE, status=500, text="<h1>boom</h1>", delay=DELAY / 3)
    upstream.reply(POSTS, json=[], delay=DELAY)
    upstream.reply(COMMENTS, json=[], delay=DELAY)

    response = await client.get("/taskgroup/users/7")

    assert response.status_code == 502
    assert response.json() == {"detail": "Upstream failed"}
    assert fetches_running() == []  # cancelled, and awaited before the answer
    await wait_until(lambda: len(upstream.abandoned) == 2)
    assert sorted(upstream.abandoned) == [COMMENTS, POSTS]  # hung up on


# --8<-- [end:taskgroup-fails]
# --8<-- [start:bad-upstream]
@pytest.mark.parametrize("route", ROUTES)
async def test_a_bad_upstream_answer_is_a_logged_502(client, upstream, caplog, route):
    for reply, error in [
        ({"status": 404, "json": {"detail": "Not Found"}}, httpx.HTTPStatusError),
        ({"status": 200, "text": "<html>oops</html>"}, ValueError),  # not JSON
    ]:
        upstream.reply(POSTS, **reply, content_type="text/html")
        caplog.clear()

        response = await client.get(route)

        assert response.status_code == 502
        assert response.json() == {"detail": "Upstream failed"}  # none of the body
        (logged,) = logged_exceptions(caplog, snippet.logger)
        assert issubclass(logged, error)  # the cause stays in the server log


async def test_an_upstream_timeout_is_a_504(app, upstream, monkeypatch, caplog):
    monkeypatch.setattr(snippet, "TIMEOUT", DELAY / 3)
    upstream.reply(COMMENTS, json=[], delay=DELAY)

    async with app_client(app) as client:
        for route in ROUTES:
            caplog.clear()
            response = await client.get(route)

            assert response.status_code == 504
            assert response.json() == {"detail": "Upstream timed out"}
            assert logged_exceptions(caplog, snippet.logger) == [httpx.ReadTimeout]


# --8<-- [end:bad-upstream]
async def test_no_upstream_listening_is_a_502(monkeypatch, caplog, unreachable_url):
    monkeypatch.setattr(snippet, "UPSTREAM_URL", unreachable_url)

    async with app_client(snippet.app) as client:
        for route in ROUTES:
            caplog.clear()
            response = await client.get(route)

            assert response.status_code == 502
            assert response.json() == {"detail": "Upstream failed"}
            assert issubclass(
                logged_exceptions(caplog, snippet.logger)[0],
                httpx.ConnectError,
            )


async def test_a_bad_user_id_is_a_422_and_calls_nothing(client, upstream):
    for route in ["/gather/users/", "/taskgroup/users/"]:
        for user_id in ["0", "-1", "abc", "7.5"]:
            response = await client.get(route + user_id)

            assert response.status_code == 422
            assert response.json()["detail"][0]["loc"] == ["path", "user_id"]
    assert upstream.calls == {}


async def test_one_client_is_opened_at_startup_and_closed_at_shutdown():
    async with snippet.lifespan(snippet.app) as state:
        client = state["client"]
        assert not client.is_closed

    assert client.is_closed


# --8<-- [start:seed]
async def test_what_the_tutorial_route_does(upstream):
    tutorial = FastAPI()

    @tutorial.get("/aggregate/user/{user_id}")
    async def aggregate_user_data(user_id: int):  # as widely copied
        async with httpx.AsyncClient() as client:  # a new client for every request
            profile_task = client.get(f"{upstream.url}/users/{user_id}/profile")
            posts_task = client.get(f"{upstream.url}/users/{user_id}/posts")
            comments_task = client.get(f"{upstream.url}/users/{user_id}/comments")
            profile, posts, comments = await asyncio.gather(
                profile_task, posts_task, comments_task
            )
            return {
                "profile": profile.json(),
                "posts": posts.json(),
                "comments": comments.json(),
            }

    upstream.reply(PROFILE, json={"name": "alice"})
    upstream.reply(POSTS, status=404, json={"detail": "Not Found"})
    upstream.reply(COMMENTS, json=[])
    async with client_for(tutorial) as client:
        response = await client.get("/aggregate/user/7")

    assert response.status_code == 200  # the upstream's 404, passed off as data
    assert response.json() == {
        "profile": {"name": "alice"},
        "posts": {"detail": "Not Found"},
        "comments": [],
    }


# --8<-- [end:seed]
