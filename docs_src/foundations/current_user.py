import asyncio
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

LOOKUP_DELAY = 0.05  # a database or identity-provider round trip


class User(BaseModel):
    id: int
    username: str


SESSIONS = {"alice-token": User(id=1, username="alice")}  # stands for your store


async def find_user(token: str) -> User | None:
    await asyncio.sleep(LOOKUP_DELAY)
    return SESSIONS.get(token)


bearer = HTTPBearer()  # (1)!


async def get_current_user(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
) -> User:
    user = await find_user(credentials.credentials)  # (2)!
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Invalid or expired token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
app = FastAPI(title="Async dependencies")


@app.get("/users/me")
async def read_me(user: CurrentUser) -> User:
    return user
