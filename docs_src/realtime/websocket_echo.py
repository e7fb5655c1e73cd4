import logging

from fastapi import FastAPI, WebSocket, WebSocketDisconnect, WebSocketException, status

logger = logging.getLogger(__name__)
app = FastAPI(title="WebSocket echo")


@app.websocket("/echo")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    logger.info("echo: client connected")
    try:
        async for text in websocket.iter_text():  # (1)!
            await websocket.send_text(f"Echo: {text}")
    except WebSocketDisconnect:  # (2)!
        pass
    except KeyError:  # (3)!
        raise WebSocketException(
            status.WS_1003_UNSUPPORTED_DATA, "Send text frames"
        ) from None
    finally:
        logger.info("echo: client gone")  # (4)!
