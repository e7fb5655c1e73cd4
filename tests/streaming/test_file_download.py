import os
from pathlib import Path
from urllib.parse import quote, unquote

import anyio
import anyio.lowlevel
import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import FileResponse, StreamingResponse

from docs_src.streaming import file_download as snippet
from tests.harness import client_for, open_stream, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def files(tmp_path: Path) -> Path:
    files = tmp_path / "files"
    files.mkdir()
    (files / "hello.txt").write_bytes(b"hello, world\n")
    (files / "sub").mkdir()
    (files / "sub" / "deep.txt").write_text("deep")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    return files


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, files: Path) -> FastAPI:
    monkeypatch.setattr(snippet, "FILES_DIR", anyio.Path(files))
    return snippet.app


# --8<-- [start:round-trip]
async def test_a_file_is_served_byte_for_byte(client):
    response = await client.get("/files/hello.txt")

    assert response.status_code == 200
    assert response.content == b"hello, world\n"
    assert response.headers["content-length"] == "13"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert {"etag", "last-modified", "accept-ranges"} <= response.headers.keys()


async def test_a_missing_file_is_a_plain_404(client):
    response = await client.get("/files/nothing-here.txt")

    assert response.status_code == 404
    assert response.json() == {"detail": "File not found"}


# --8<-- [end:round-trip]
# --8<-- [start:hostile-names]
HOSTILE = [
    "%2e%2e",  # ".." once decoded
    "..%2Fsecret.txt",  # "../secret.txt"
    "%2E%2E%2Fsecret.txt",
    "sub%2F..%2F..%2Fsecret.txt",  # down, then up twice
    "..%5Csecret.txt",  # a backslash: an ordinary character on Linux
    "%2Fetc%2Fpasswd",  # an absolute path: root / "/etc/passwd" is "/etc/passwd"
    "/etc/passwd",  # the same, as "/files//etc/passwd"
    "hello.txt%00.png",  # a NUL byte
    "%2e",  # the folder itself: not a file
    "",
    "sub",  # a folder inside: not a file
]


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_names_get_404_and_never_the_secret(client, name):
    response = await client.get(f"/files/{name}")

    assert response.status_code == 404
    assert response.json() == {"detail": "File not found"}
    assert "TOP SECRET" not in response.text


async def test_an_absolute_path_to_the_secret_is_refused(client, tmp_path):
    response = await client.get("/files/" + quote(str(tmp_path / "secret.txt")))

    assert response.status_code == 404
    assert "TOP SECRET" not in response.text


async def test_a_name_that_goes_out_and_back_in_reveals_nothing(client, tmp_path):
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)
    (tmp_path / "docs").symlink_to(tmp_path / "elsewhere" / "deeper")
    back_in = "%2F..%2Ffiles%2Fhello.txt"  # then down to a file that is served
    outside = quote(str(tmp_path), safe="")
    probes = {  # something outside that exists -> the same name, nothing there
        "..%2Fsecret.txt": "..%2Fnope.txt",
        "..%2Fdocs": "..%2Fnope",  # a symbolic link outside
        f"{outside}%2Fsecret.txt": f"{outside}%2Fnope.txt",  # absolute
    }

    for there, not_there in probes.items():
        exists = await client.get(f"/files/{there}{back_in}")
        missing = await client.get(f"/files/{not_there}{back_in}")

        assert exists.status_code == missing.status_code == 404


async def test_a_symlink_is_judged_by_where_it_lands(client, files, tmp_path):
    (files / "leak.txt").symlink_to(tmp_path / "secret.txt")  # points outside
    (files / "alias.txt").symlink_to(files / "hello.txt")  # points inside
    (files / "loop.txt").symlink_to(files / "loop.txt")  # points at itself

    leak = await client.get("/files/leak.txt")
    alias = await client.get("/files/alias.txt")
    loop = await client.get("/files/loop.txt")

    assert leak.status_code == 404
    assert "TOP SECRET" not in leak.text
    assert alias.content == b"hello, world\n"
    assert 'filename="alias.txt"' in alias.headers["content-disposition"]
    assert loop.status_code == 404


# --8<-- [end:hostile-names]
# --8<-- [start:names]
async def test_a_chinese_name_has_an_ascii_fallback_and_the_exact_name(client, files):
    (files / "报告.txt").write_text("季度数字", "utf-8")

    response = await client.get("/files/报告.txt")

    header = response.headers["content-disposition"]
    assert response.text == "季度数字"
    assert header == (
        "attachment; filename=\"__.txt\"; filename*=utf-8''%E6%8A%A5%E5%91%8A.txt"
    )
    assert unquote(header.partition("filename*=utf-8''")[2]) == "报告.txt"


async def test_a_name_cannot_add_parameters_to_the_header(client, files):
    (files / "a.txt; filename*=UTF-8''evil.exe").write_text("x")

    response = await client.get("/files/a.txt; filename*=UTF-8''evil.exe")

    assert response.headers["content-disposition"] == (
        'attachment; filename="a.txt_ filename__UTF-8__evil.exe"; '
        "filename*=utf-8''a.txt%3B%20filename%2A%3DUTF-8%27%27evil.exe"
    )


async def test_a_name_that_is_not_utf8_on_disk_is_no_500(client, files):
    target = os.fsdecode(b"\xff.txt")  # a byte that is not UTF-8, as Python sees it
    (files / target).write_text("x")
    (files / "latin1.txt").symlink_to(files / target)

    response = await client.get("/files/latin1.txt")

    assert response.status_code == 200
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"latin1.txt\"; filename*=utf-8''latin1.txt"
    )  # named as asked, not after the target


# --8<-- [end:names]
# --8<-- [start:starlette-filename]
def test_starlettes_own_filename_sends_no_ascii_fallback(files):
    response = FileResponse(files / "hello.txt", filename="报告.txt")

    assert response.headers["content-disposition"] == (
        "attachment; filename*=utf-8''%E6%8A%A5%E5%91%8A.txt"
    )


# --8<-- [end:starlette-filename]
# --8<-- [start:seed]
def seed_app(data_dir: Path) -> FastAPI:
    seed = FastAPI()

    @seed.get("/download/{filename:path}")  # ":path", the usual "fix" for subfolders
    async def download_file(filename: str):
        async def file_stream():
            with open(f"{data_dir}/{filename}", "rb") as f:  # noqa: ASYNC230
                while chunk := f.read(8192):
                    yield chunk

        return StreamingResponse(
            file_stream(),
            media_type="application/octet-stream",
            headers={"Content-Disposition": f"attachment; filename={filename}"},
        )

    return seed


async def test_the_seed_leaks_the_secret_and_lets_names_inject(files):
    (files / "a.txt; filename*=UTF-8''evil.exe").write_text("x")
    async with client_for(seed_app(files)) as client:
        leak = await client.get("/download/..%2Fsecret.txt")
        injected = await client.get("/download/a.txt; filename*=UTF-8''evil.exe")
        with pytest.raises(UnicodeEncodeError):  # header values must be Latin-1
            await client.get("/download/报告.txt")

    assert leak.text == "TOP SECRET"
    assert injected.headers["content-disposition"] == (
        "attachment; filename=a.txt; filename*=UTF-8''evil.exe"
    )


async def test_what_a_real_client_gets_from_the_seed(files):
    async with (
        serve(seed_app(files)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        chinese = await client.get("/download/报告.txt")
        async with client.stream("GET", "/download/nothing-here.txt") as missing:
            assert missing.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                await missing.aread()  # the connection breaks mid-body

    assert chinese.status_code == 500


# --8<-- [end:seed]
# --8<-- [start:removed]
async def test_a_file_removed_once_the_status_is_sent_is_a_broken_200(app, files):
    async def remove_the_file_once_started(scope, receive, send):
        async def send_then_remove(message):
            await send(message)
            if message["type"] == "http.response.start":
                (files / "hello.txt").unlink()  # after the checks, before the read

        await app(scope, receive, send_then_remove)

    async with (
        serve(remove_the_file_once_started) as url,
        httpx.AsyncClient(base_url=url) as client,
        client.stream("GET", "/files/hello.txt") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-length"] == "13"
        with pytest.raises(httpx.RemoteProtocolError):
            await response.aread()  # the connection breaks


# --8<-- [end:removed]
# --8<-- [start:threads]
async def most_threads_busy_while_streaming(app: FastAPI, path: str) -> int:
    limiter = anyio.to_thread.current_default_thread_limiter()
    most, done = 0, False

    async def watch() -> None:
        nonlocal most
        while not done:
            most = max(most, limiter.borrowed_tokens)
            await anyio.lowlevel.checkpoint()

    async with open_stream(app, path) as stream, anyio.create_task_group() as tg:
        tg.start_soon(watch)  # from the first byte on: the path checks are done
        body = b"".join([chunk async for chunk in stream.aiter_bytes()])
        done = True
    assert len(body) == 2_000_000
    return most


async def test_file_reads_run_in_worker_threads_not_on_the_loop(app, files):
    (files / "big.bin").write_bytes(os.urandom(2_000_000))

    assert await most_threads_busy_while_streaming(app, "/files/big.bin") >= 1
    assert (
        await most_threads_busy_while_streaming(seed_app(files), "/download/big.bin")
        == 0
    )  # the seed's f.read() runs on the event loop's own thread


# --8<-- [end:threads]
# --8<-- [start:ranges]
async def test_a_range_request_gets_just_those_bytes(client):
    response = await client.get("/files/hello.txt", headers={"Range": "bytes=7-11"})

    assert response.status_code == 206
    assert response.content == b"world"
    assert response.headers["content-range"] == "bytes 7-11/13"
    assert response.headers["accept-ranges"] == "bytes"


async def test_a_range_past_the_end_is_416(client):
    response = await client.get("/files/hello.txt", headers={"Range": "bytes=50-"})

    assert response.status_code == 416
    assert response.headers["content-range"] == "bytes */13"


# --8<-- [end:ranges]
async def test_a_file_in_a_subfolder_is_served(client):
    response = await client.get("/files/sub/deep.txt")

    assert response.text == "deep"
