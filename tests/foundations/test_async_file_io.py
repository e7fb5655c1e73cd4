import pathlib
import threading

import anyio
import pytest
from fastapi import FastAPI

from docs_src.foundations import async_file_io as snippet
from tests.harness import client_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path):
    monkeypatch.setattr(snippet, "NOTES_DIR", anyio.Path(tmp_path / "notes"))
    (tmp_path / "secret.txt").write_text("top secret")
    return snippet.app


# --8<-- [start:round-trip]
async def test_write_then_read_a_note(client, tmp_path):
    content = "牛奶, eggs\r\nbread\rtea\n"  # every kind of line end survives
    written = await client.put("/notes/shopping", json={"content": content})
    response = await client.get("/notes/shopping")

    assert written.status_code == 204
    assert response.json() == {"content": content}
    assert (tmp_path / "notes" / "shopping.txt").read_bytes() == content.encode()


async def test_the_disk_is_touched_off_the_event_loop(client, monkeypatch):
    loop_thread, disk_threads = threading.get_ident(), []
    for name in ("read_bytes", "write_bytes"):
        real = getattr(pathlib.Path, name)

        def spy(self, *args, _real=real):
            disk_threads.append(threading.get_ident())
            return _real(self, *args)

        monkeypatch.setattr(pathlib.Path, name, spy)

    await client.put("/notes/n", json={"content": "x"})
    await client.get("/notes/n")

    assert len(disk_threads) == 2
    assert loop_thread not in disk_threads  # both ran in a worker thread


async def test_a_missing_note_is_404(client):
    response = await client.get("/notes/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"detail": "Note not found"}


# --8<-- [end:round-trip]
# --8<-- [start:hostile-names]
HOSTILE = {  # name as sent -> status
    "%2e%2e": 422,  # decoded to "..": fails the pattern
    "..%5Csecret": 422,  # a backslash: fails the pattern
    "secret.txt": 422,  # a dot: fails the pattern
    "a" * 65: 422,  # too long
    "%00": 422,  # a NUL byte
    "..%2Fsecret": 404,  # decoded to "../secret": two segments, no route matches
    "%2E%2E%2Fsecret": 404,
    "%2Ftmp%2Fsecret": 404,
}


@pytest.mark.parametrize(("name", "status"), HOSTILE.items())
async def test_hostile_names_never_reach_the_disk(client, tmp_path, name, status):
    read = await client.get(f"/notes/{name}")
    written = await client.put(f"/notes/{name}", json={"content": "pwned"})

    assert read.status_code == written.status_code == status
    assert "top secret" not in read.text
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes", "secret.txt"]


# --8<-- [end:hostile-names]
async def test_a_literal_dot_dot_is_resolved_by_the_client(client):
    response = await client.get("/notes/..")

    assert response.request.url.path == "/"
    assert response.status_code == 404


async def test_a_rejected_name_says_why(client):
    response = await client.get("/notes/secret.txt")

    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["path", "name"]
    assert error["type"] == "string_pattern_mismatch"


@pytest.mark.parametrize(
    "body",
    [{"content": "x" * 10_001}, {"content": 42}, {}, None],
)
async def test_invalid_bodies_are_422_and_write_nothing(client, tmp_path, body):
    response = await client.put("/notes/n", json=body)

    assert response.status_code == 422
    assert not (tmp_path / "notes" / "n.txt").exists()


async def test_the_lifespan_creates_the_folder(client, tmp_path):
    assert (tmp_path / "notes").is_dir()


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e309"])
async def test_a_non_finite_number_is_a_422_that_echoes_nothing(
    client, tmp_path, number
):
    headers = {"Content-Type": "application/json"}

    response = await client.put(
        "/notes/n", content=f'{{"content": {number}}}', headers=headers
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "type": "string_type",
                "loc": ["body", "content"],
                "msg": "Input should be a valid string",
            }
        ]
    }
    assert not (tmp_path / "notes" / "n.txt").exists()


async def test_with_fastapis_default_handler_the_same_body_is_a_500():
    bare = FastAPI()  # the same route, without `invalid_input`

    @bare.put("/notes/{name}", status_code=204)
    async def write_note(name: str, note: snippet.Note) -> None: ...

    async with client_for(bare, raise_app_exceptions=False) as client:
        response = await client.put(
            "/notes/n",
            content='{"content": NaN}',
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 500
