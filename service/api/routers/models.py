"""``GET /v1/models``: what the service serves."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from service.api.deps import Ctx, Tenant
from service.api.errors import JSONResponse
from service.api.schemas import ErrorOut, ModelsOut
from service.engine.registry import ServedModel

router = APIRouter(tags=["models"])


def model_json(entry: ServedModel, default: bool) -> dict[str, Any]:
    m = entry.model
    return {
        "name": entry.name,
        "version": entry.version,
        "default": default,
        "input_size": int(m.input_size),
        "inputs": list(entry.features.names) if entry.features.names else None,
        "output_size": int(m.output_size),
        "outputs": list(entry.output_names) if entry.output_names else None,
        "state_size": int(m.state_size),
        "time_unit": float(m.time_unit),
        "default_dt": float(m.default_dt),
    }


@router.get(
    "/v1/models",
    summary="Served models",
    description="Each served model's name, version hash, inputs, outputs and time unit. The "
    "default model answers requests without `?model=`.",
    response_model=ModelsOut,
    responses={
        401: {"model": ErrorOut, "description": "Missing or unknown API key (`unauthorized`)."}
    },
)
async def list_models(ctx: Ctx, tenant: Tenant) -> Response:
    default = ctx.registry.default.name
    return JSONResponse(
        {
            "models": [model_json(e, e.name == default) for e in ctx.registry.all()],
            "default": default,
        }
    )
