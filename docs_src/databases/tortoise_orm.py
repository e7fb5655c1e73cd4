import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import FastAPI, HTTPException, Path, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from tortoise import fields
from tortoise.contrib.fastapi import RegisterTortoise
from tortoise.exceptions import IntegrityError
from tortoise.models import Model

DB_URL = os.environ.get("DB_URL", "sqlite://tortoise.db")  # (1)!


class User(Model):
    id = fields.IntField(primary_key=True)  # (2)!
    name = fields.CharField(max_length=100)
    email = fields.CharField(max_length=254, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "tortoise_users"


class NewUser(BaseModel):  # (3)!
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f]+$")
    email: str = Field(max_length=254, pattern=r"^[^@\s\x00-\x1f]+@[^@\s\x00-\x1f]+$")


class UserOut(BaseModel):  # (4)!
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    email: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with RegisterTortoise(  # (5)!
        app,
        db_url=DB_URL,
        modules={"models": [__name__]},  # (6)!
        generate_schemas=True,  # (7)!
    ):
        yield


async def invalid_input(request: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{k: e[k] for k in ("type", "loc", "msg")} for e in exc.errors()]
    return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)


app = FastAPI(
    title="Tortoise ORM",
    lifespan=lifespan,
    exception_handlers={RequestValidationError: invalid_input},
)
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]  # (8)!


@app.get("/tortoise-users/{user_id}")
async def read_user(user_id: UserId) -> UserOut:
    if (user := await User.get_or_none(id=user_id)) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "User not found")
    return UserOut.model_validate(user)


@app.post("/tortoise-users", status_code=status.HTTP_201_CREATED)
async def create_user(new: NewUser) -> UserOut:
    try:
        user = await User.create(**new.model_dump())
    except IntegrityError:  # (9)!
        raise HTTPException(
            status.HTTP_409_CONFLICT, "Email already registered"
        ) from None
    return UserOut.model_validate(user)
