"""Request bodies read under a cap, then parsed by the project's own JSON rule.

A body over its endpoint's cap is refused with 413 before a byte of it is parsed: at once
when ``Content-Length`` says so, else (a chunked body) as soon as the bytes read pass it.
What fits is parsed by ``worker.contract.load_json`` (nesting at most 32 levels, checked
before the parser can recurse; NaN and Infinity refused by name by the models), as the CLI
and the worker parse a job, then validated by the endpoint's model, off the event loop.

The caller's token is checked before the body is read: the route lists ``require`` first.
FastAPI documents no body it does not parse itself, so each capped body states its model
and cap in ``openapi_extra`` and ``add_body_schemas`` puts the models in the document.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from ops.web.errors import ApiError, invalid
from worker.contract import load_json

M = TypeVar("M", bound=BaseModel)
REF = "#/components/schemas/{model}"
_documented: list[type[BaseModel]] = []


def size_text(size: int) -> str:
    """``512 KiB``, ``8 MiB``: a cap as the docs and the 413 say it."""
    if size % (1024 * 1024) == 0:
        return f"{size // (1024 * 1024)} MiB"
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size:,} bytes"


@dataclass(frozen=True)
class CappedBody(Generic[M]):
    """A dependency: the request's JSON body as ``model``, at most ``cap`` bytes."""

    model: type[M]
    cap: int
    description: str

    def __post_init__(self) -> None:
        _documented.append(self.model)

    async def __call__(self, request: Request) -> M:
        raw = await read_capped(request, self.cap)
        return await run_in_threadpool(parse, self.model, raw)

    @property
    def openapi(self) -> dict[str, Any]:
        """The operation's ``requestBody``, for ``openapi_extra``."""
        schema = {"$ref": REF.format(model=self.model.__name__)}
        return {
            "requestBody": {
                "required": True,
                "description": f"{self.description} At most {size_text(self.cap)} (else 413).",
                "content": {"application/json": {"schema": schema}},
            }
        }


def too_large(cap: int) -> ApiError:
    return ApiError(413, f"body over {size_text(cap)}, this endpoint's cap; nothing was read")


async def read_capped(request: Request, cap: int) -> bytes:
    """The body, refused (413) once it is known to pass ``cap``: by its declared length,
    or by counting what arrives."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large(cap)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise too_large(cap)
        chunks.append(chunk)
    return b"".join(chunks)


def parse(model: type[M], raw: bytes) -> M:
    """UTF-8 JSON text, parsed by ``load_json`` and validated by ``model``; 422 naming the
    field otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, f"body: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise ApiError(422, "body: empty; a JSON object is expected")
    try:
        return model.model_validate(load_json(text))
    except ValidationError as exc:
        raise invalid(exc) from None


def add_body_schemas(app: FastAPI) -> None:
    """Put the capped bodies' models in the app's OpenAPI document, beside its own."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        _, defs = models_json_schema([(m, "validation") for m in _documented], ref_template=REF)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in defs.get("$defs", {}).items():
            schemas.setdefault(name, schema)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
