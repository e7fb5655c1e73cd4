import re
from pathlib import PurePosixPath
from urllib.parse import quote

import anyio
from fastapi import FastAPI, HTTPException, status
from fastapi.responses import FileResponse

FILES_DIR = anyio.Path("files")  # relative to the working directory

app = FastAPI(title="File downloads")


def attachment(filename: str) -> str:  # (1)!
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=utf-8''{quote(filename)}"


@app.get("/files/{name:path}")
async def download(name: str) -> FileResponse:
    not_found = HTTPException(status.HTTP_404_NOT_FOUND, "File not found")
    asked = PurePosixPath(name)
    if asked.is_absolute() or ".." in asked.parts:  # (2)!
        raise not_found
    root = await FILES_DIR.resolve()
    try:
        path = await (root / name).resolve()  # (3)!
    except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte
        raise not_found from None
    if not path.is_relative_to(root) or not await path.is_file():  # (4)!
        raise not_found
    return FileResponse(  # (5)!
        path, headers={"Content-Disposition": attachment(asked.name)}
    )
