import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest
from fastapi import BackgroundTasks, FastAPI, UploadFile
from starlette import datastructures
from starlette.formparsers import MultiPartParser

from docs_src.streaming import upload as snippet
from tests.harness import (
    client_for,
    logged_exceptions,
    running,
    serve,
    timed,
    wait_until,
)

pytestmark = pytest.mark.anyio
BOUNDARY = "b0undary"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture(autouse=True)
def info_logs(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger=snippet.__name__)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FastAPI:
    monkeypatch.setattr(
        snippet, "UPLOAD_DIR", anyio.Path(tmp_path / "data" / "uploads")
    )
    return snippet.app


@pytest.fixture
def processed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, bytes]:
    """What `process` found on disk, by path relative to tmp_path, while it ran."""
    seen: dict[str, bytes] = {}

    async def record(path: anyio.Path) -> None:
        seen[Path(path).relative_to(tmp_path).as_posix()] = await path.read_bytes()

    monkeypatch.setattr(snippet, "process", record)
    return seen


def form_parts(filename: str) -> tuple[bytes, bytes]:
    """What comes before and after the file's bytes in a one-file multipart body."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n\r\n'
    )
    return head.encode(), f"\r\n--{BOUNDARY}--\r\n".encode()


def raw_form(filename: str, content: bytes) -> dict:
    """A multipart body whose file name reaches the server byte for byte.

    httpx's `files=` percent-escapes quotes and control characters in the name; a
    hostile client does not.
    """
    head, tail = form_parts(filename)
    return {"content": head + content + tail, "headers": MULTIPART}


def everything_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


# --8<-- [start:round-trip]
async def test_an_upload_is_stored_under_a_new_name_then_processed(client, processed):
    response = await client.post(
        "/uploads", files={"file": ("report.txt", b"quarterly numbers")}
    )

    receipt = response.json()
    assert response.status_code == 202
    assert receipt == {"id": receipt["id"], "filename": "report.txt", "size": 17}
    assert processed == {f"data/uploads/{receipt['id']}": b"quarterly numbers"}


async def test_two_uploads_with_one_name_never_collide(client, processed):
    first = await client.post("/uploads", files={"file": ("a.txt", b"first")})
    second = await client.post("/uploads", files={"file": ("a.txt", b"second")})

    assert first.json()["id"] != second.json()["id"]
    assert sorted(processed.values()) == [b"first", b"second"]


async def test_the_default_process_sees_the_whole_file(client, caplog, tmp_path):
    response = await client.post("/uploads", files={"file": ("a.bin", b"x" * 1000)})

    upload_id = response.json()["id"]
    assert f"processed {upload_id}: 1000 bytes" in caplog.messages
    assert everything_under(tmp_path) == ["data", "data/uploads"]  # deleted


# --8<-- [end:round-trip]
# --8<-- [start:hostile-names]
HOSTILE = {  # the name the client sends -> the name the receipt shows
    "../../escaped.txt": "escaped.txt",
    "/etc/passwd": "passwd",
    "..\\..\\escaped.txt": "escaped.txt",
    "a\x00b.txt": "ab.txt",  # a NUL byte
    "evil\u202etxt.exe": "eviltxt.exe",  # a right-to-left override: "evilexe.txt"
    "长" * 300: "长" * 100,  # a very long name
    "..": "..",  # only data now, never a path
}


@pytest.mark.parametrize(("name", "shown"), HOSTILE.items())
async def test_hostile_names_are_only_data(client, processed, tmp_path, name, shown):
    response = await client.post("/uploads", **raw_form(name, b"data"))

    receipt = response.json()
    assert response.status_code == 202
    assert receipt["filename"] == shown
    assert processed == {f"data/uploads/{receipt['id']}": b"data"}
    assert str(tmp_path) not in response.text  # no server path in the answer
    assert everything_under(tmp_path) == ["data", "data/uploads"]


# --8<-- [end:hostile-names]
# --8<-- [start:size-limit]
async def test_a_file_at_the_limit_is_accepted(client):
    content = b"x" * snippet.MAX_BYTES
    response = await client.post("/uploads", files={"file": ("f.bin", content)})

    assert response.status_code == 202
    assert response.json()["size"] == snippet.MAX_BYTES


async def test_one_byte_over_is_413_and_the_partial_file_is_gone(
    client, processed, tmp_path
):
    content = b"x" * (snippet.MAX_BYTES + 1)
    response = await client.post("/uploads", files={"file": ("f.bin", content)})

    assert response.status_code == 413
    assert response.json() == {"detail": "The file is larger than 1000000 bytes"}
    assert processed == {}
    assert everything_under(tmp_path) == ["data", "data/uploads"]


async def test_a_cancelled_upload_leaves_no_partial_file(client, monkeypatch, tmp_path):
    uploads = tmp_path / "data" / "uploads"
    parked = asyncio.Event()
    read = datastructures.UploadFile.read

    async def park_on_the_second_read(self: UploadFile, size: int = -1) -> bytes:
        if self.file.tell() > 0:  # one chunk is already on disk
            parked.set()
            await anyio.sleep_forever()
        return await read(self, size)

    monkeypatch.setattr(datastructures.UploadFile, "read", park_on_the_second_read)

    async def send() -> None:
        await client.post("/uploads", files={"file": ("a.bin", b"x" * 200_000)})

    async with anyio.create_task_group() as requests:
        requests.start_soon(send)
        with anyio.fail_after(2):
            await parked.wait()
        assert [p.stat().st_size for p in uploads.iterdir()] == [snippet.CHUNK]
        requests.cancel_scope.cancel()  # e.g. a timeout, or the server stopping

    assert everything_under(tmp_path) == ["data", "data/uploads"]


# --8<-- [end:size-limit]
async def test_an_existing_file_is_never_overwritten(client, monkeypatch, tmp_path):
    taken = uuid.UUID(int=1)  # an id that is already on disk
    monkeypatch.setattr(snippet.uuid, "uuid4", lambda: taken)
    existing = tmp_path / "data" / "uploads" / taken.hex
    existing.write_bytes(b"another upload")

    with pytest.raises(FileExistsError):  # an error, never an overwrite
        await client.post("/uploads", files={"file": ("a.txt", b"data")})

    assert existing.read_bytes() == b"another upload"


# --8<-- [start:body-limit]
class CountingBody:
    """A one-file multipart body sent in 64 KiB chunks, counting the bytes sent."""

    def __init__(self, chunks: int) -> None:
        self.chunks, self.sent = chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        head, tail = form_parts("big.bin")
        yield head
        for _ in range(self.chunks):
            self.sent += 65536
            yield b"x" * 65536
        yield tail


async def test_a_declared_huge_body_is_refused_before_it_is_read(client, tmp_path):
    body = CountingBody(chunks=160)  # 10 MiB
    headers = {**MULTIPART, "Content-Length": str(10 * 2**20 + 200)}

    response = await client.post("/uploads", content=body, headers=headers)

    assert response.status_code == 413
    assert response.text == "Content Too Large"
    assert body.sent == 0
    assert everything_under(tmp_path) == ["data", "data/uploads"]


async def test_an_undeclared_huge_body_is_cut_off_near_the_limit(client, tmp_path):
    body = CountingBody(chunks=160)  # 10 MiB, no Content-Length

    response = await client.post("/uploads", content=body, headers=MULTIPART)

    assert response.status_code == 413
    assert response.json() == {"detail": "Content Too Large"}
    limit = snippet.MAX_BYTES + snippet.CHUNK  # the route's max_body_size
    assert limit < body.sent <= limit + 65536  # one chunk past it, of 10 MiB
    assert everything_under(tmp_path) == ["data", "data/uploads"]


async def test_the_function_reads_chunks_once_the_body_has_arrived(client, monkeypatch):
    body = CountingBody(chunks=4)
    reads: list[tuple[int, int]] = []  # (size asked for, bytes sent so far)
    read = datastructures.UploadFile.read  # the class FastAPI's UploadFile extends

    async def spy(self: UploadFile, size: int = -1) -> bytes:
        reads.append((size, body.sent))
        return await read(self, size)

    monkeypatch.setattr(datastructures.UploadFile, "read", spy)

    await client.post("/uploads", content=body, headers=MULTIPART)

    assert reads == [(snippet.CHUNK, 4 * 65536)] * 5  # 4 chunks, then b"": done


async def test_an_accepted_file_is_in_memory_when_the_function_runs(
    client, monkeypatch
):
    on_disk: list[bool] = []  # per read: has Starlette moved the part to disk?
    read = datastructures.UploadFile.read

    async def spy(self: UploadFile, size: int = -1) -> bytes:
        on_disk.append(self.file._rolled)  # a SpooledTemporaryFile's own flag
        return await read(self, size)

    monkeypatch.setattr(datastructures.UploadFile, "read", spy)
    content = b"x" * snippet.MAX_BYTES  # the largest file the route accepts

    response = await client.post("/uploads", files={"file": ("f.bin", content)})

    assert response.status_code == 202
    assert len(on_disk) == 17  # 16 chunks of at most 64 KiB, then b"": done
    assert not any(on_disk)  # the whole file was in memory all along


# --8<-- [end:body-limit]
# --8<-- [start:lifecycle]
async def test_the_file_lives_exactly_as_long_as_its_processing(
    app, monkeypatch, tmp_path
):
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_process(path: anyio.Path) -> None:
        started.set()
        await release.wait()

    monkeypatch.setattr(snippet, "process", slow_process)
    async with (
        running(app) as started_app,
        serve(started_app) as url,  # a real server: it answers, then runs the task
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.post("/uploads", files={"file": ("a.txt", b"data")})
        stored = tmp_path / "data" / "uploads" / response.json()["id"]
        with anyio.fail_after(2):
            await started.wait()

        assert response.status_code == 202  # the client has its answer...
        assert stored.read_bytes() == b"data"  # ...and the file is still in use
        release.set()
        await wait_until(lambda: not stored.exists())  # deleted once processed


async def test_a_failed_processing_is_logged_and_still_cleans_up(
    client, monkeypatch, caplog, tmp_path
):
    async def broken_process(path: anyio.Path) -> None:
        raise RuntimeError("scanner crashed")

    monkeypatch.setattr(snippet, "process", broken_process)

    response = await client.post("/uploads", files={"file": ("a.txt", b"data")})

    assert response.status_code == 202
    assert logged_exceptions(caplog, snippet.logger) == [RuntimeError]
    assert everything_under(tmp_path) == ["data", "data/uploads"]


async def test_a_hung_processing_times_out_and_still_cleans_up(
    client, monkeypatch, caplog, tmp_path
):
    async def hung_process(path: anyio.Path) -> None:
        await anyio.sleep_forever()

    monkeypatch.setattr(snippet, "process", hung_process)
    monkeypatch.setattr(snippet, "PROCESS_TIMEOUT", 0.05)

    with anyio.fail_after(2):  # the client waits for the task: it must end
        response = await client.post("/uploads", files={"file": ("a.txt", b"data")})

    assert response.status_code == 202
    assert logged_exceptions(caplog, snippet.logger) == [TimeoutError]
    assert everything_under(tmp_path) == ["data", "data/uploads"]


# --8<-- [end:lifecycle]
# --8<-- [start:in-process]
async def test_an_in_process_client_waits_for_the_background_task(
    client, monkeypatch, tmp_path
):
    async def slow_process(path: anyio.Path) -> None:
        await asyncio.sleep(0.1)

    monkeypatch.setattr(snippet, "process", slow_process)

    response, seconds = await timed(
        client.post("/uploads", files={"file": ("a.txt", b"data")})
    )

    assert response.status_code == 202
    assert seconds >= 0.1  # the task had finished before the client got its 202
    assert everything_under(tmp_path) == ["data", "data/uploads"]


# --8<-- [end:in-process]
# --8<-- [start:seed]
def seed_app(tmp_dir: Path, delay: float) -> FastAPI:
    seed = FastAPI()

    async def cleanup_temp_files(file_path: str):
        await asyncio.sleep(delay)  # the seed waits 60 s
        if os.path.exists(file_path):  # noqa: ASYNC240
            os.remove(file_path)
            print(f"Cleaned up: {file_path}")

    @seed.post("/upload")
    async def upload_file(file: UploadFile, background_tasks: BackgroundTasks):
        temp_path = f"{tmp_dir}/{file.filename}"
        with open(temp_path, "wb") as f:  # noqa: ASYNC230
            content = await file.read()
            f.write(content)
        background_tasks.add_task(cleanup_temp_files, temp_path)
        return {"filename": file.filename, "path": temp_path}

    return seed


async def test_the_seed_writes_where_the_client_says(tmp_path, capsys):
    (tmp_path / "tmp").mkdir()
    seed = seed_app(tmp_path / "tmp", delay=0)
    async with client_for(seed) as client:
        response = await client.post(
            "/upload", files={"file": ("../escaped.txt", b"x")}
        )

    written = f"{tmp_path}/tmp/../escaped.txt"  # outside tmp/
    assert response.json()["path"] == written  # and the answer shows it
    assert capsys.readouterr().out == f"Cleaned up: {written}\n"


async def test_the_seed_lets_one_upload_overwrite_and_delete_another(tmp_path, capsys):
    (tmp_path / "tmp").mkdir()
    async with (
        serve(seed_app(tmp_path / "tmp", delay=0.3)) as url,  # its timers: 0.3 s
        httpx.AsyncClient(base_url=url) as client,
    ):
        alice = await client.post("/upload", files={"file": ("report.txt", b"alice")})
        bob = await client.post("/upload", files={"file": ("report.txt", b"bob")})
        shared = anyio.Path(alice.json()["path"])

        assert bob.json()["path"] == str(shared)  # one file for both
        assert await shared.read_bytes() == b"bob"  # Alice's upload is gone
    # the server has waited for both timers
    assert not await shared.exists()
    assert capsys.readouterr().out.count("Cleaned up") == 1  # the first timer won


# --8<-- [end:seed]
async def test_a_missing_file_field_is_422(client, tmp_path):
    response = await client.post("/uploads", data={"note": "no file here"})

    assert response.status_code == 422
    error = response.json()["detail"][0]
    assert error["loc"] == ["body", "file"]
    assert error["type"] == "missing"
    assert everything_under(tmp_path) == ["data", "data/uploads"]


async def test_a_text_field_named_file_is_422(client, tmp_path):
    response = await client.post("/uploads", data={"file": "not a file"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "file"]
    assert everything_under(tmp_path) == ["data", "data/uploads"]


async def test_a_request_without_a_body_is_422(client):
    response = await client.post("/uploads")

    assert response.status_code == 422


def test_starlette_spools_file_parts_to_disk_past_one_megabyte():
    assert MultiPartParser.spool_max_size == 1024 * 1024
