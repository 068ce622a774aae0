"""``WS /v1/streams/{stream_id}/live``: a stream's live predictions, and events sent back.

The protocol, close codes and buffering are those of :class:`service.live.session.LiveSession`
(see its module docstring); this route authenticates, checks the stream id and model, and runs
a session.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.websockets import WebSocket

from service.api.deps import AppContext, served_model, valid_stream_id
from service.api.errors import ApiError
from service.live.session import POLICY_VIOLATION, TRY_AGAIN_LATER, LiveSession

router = APIRouter(tags=["live"])


@router.websocket("/v1/streams/{stream_id}/live", name="live")
async def live(websocket: WebSocket, stream_id: str) -> None:
    """Live predictions of one stream (see the module docstring for the protocol)."""
    ctx: AppContext = websocket.app.state.ctx
    await websocket.accept()
    params = websocket.query_params
    try:
        tenant = ctx.auth.tenant_for(websocket.headers.get("authorization"), params.get("token"))
        stream_id = valid_stream_id(ctx, stream_id)
        model_filter = params.get("model") or None
        served = served_model(ctx, model_filter)
    except ApiError as exc:
        await websocket.close(POLICY_VIOLATION, f"{exc.code.value}: {exc.message}"[:120])
        return
    if ctx.closing or ctx.engine is None or ctx.live is None:
        await websocket.close(TRY_AGAIN_LATER, "the service is not running")
        return
    session = LiveSession(websocket, ctx, tenant, stream_id, served, model_filter)
    await session.run()
