import pytest
from fastapi import FastAPI

from docs_src.foundations import current_user as snippet
from tests.harness import app_client, run_concurrently

pytestmark = pytest.mark.anyio
ALICE = {"Authorization": "Bearer alice-token"}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(snippet, "LOOKUP_DELAY", 0)
    return snippet.app


# --8<-- [start:auth]
async def test_a_valid_bearer_token_gives_the_user(client):
    response = await client.get("/users/me", headers=ALICE)

    assert response.status_code == 200
    assert response.json() == {"id": 1, "username": "alice"}


async def test_no_token_is_401_with_a_challenge(client):
    response = await client.get("/users/me")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": "Not authenticated"}


async def test_an_unknown_token_is_401(client):
    response = await client.get("/users/me", headers={"Authorization": "Bearer forged"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {"detail": "Invalid or expired token"}


async def test_a_token_in_the_query_string_is_ignored(client):
    response = await client.get("/users/me", params={"token": "alice-token"})

    assert response.status_code == 401


# --8<-- [end:auth]
@pytest.mark.parametrize(
    "authorization",
    ["Basic YWxpY2U6c2VjcmV0", "alice-token", "Bearer", "Bearer ", "bearer  "],
)
async def test_malformed_authorization_headers_are_401(client, authorization):
    response = await client.get("/users/me", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_the_scheme_is_in_openapi_and_no_token_parameter_is(client):
    schema = (await client.get("/openapi.json")).json()

    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
    }
    operation = schema["paths"]["/users/me"]["get"]
    assert operation["security"] == [{"HTTPBearer": []}]
    assert "parameters" not in operation


async def test_the_lookup_runs_once_per_request(monkeypatch):
    lookups = []

    async def counting_find_user(token: str):
        lookups.append(token)
        return snippet.SESSIONS.get(token)

    monkeypatch.setattr(snippet, "find_user", counting_find_user)
    app = FastAPI()

    @app.get("/twice")
    async def twice(a: snippet.CurrentUser, b: snippet.CurrentUser) -> dict:
        return {"same": a is b}

    async with app_client(app) as client:
        response = await client.get("/twice", headers=ALICE)

    assert response.json() == {"same": True}
    assert lookups == ["alice-token"]


async def test_lookups_wait_together_not_one_after_another(client, monkeypatch):
    monkeypatch.setattr(snippet, "LOOKUP_DELAY", 0.1)

    responses, seconds = await run_concurrently(
        10, lambda: client.get("/users/me", headers=ALICE)
    )

    assert {r.status_code for r in responses} == {200}
    assert seconds < 0.5  # ten lookups of 0.1 s one after another would take 1 s
