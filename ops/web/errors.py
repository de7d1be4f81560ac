"""Every error the web service answers, as JSON: ``{"error": {"status", "message"}}``.

A message names what is wrong (the field, the job id) and never echoes a token or the
body it refused; pydantic's 422s become one line naming each field as a JSON path
(``tickets[3].ticket.title``). Redis out of reach or refusing is a 503 with one fixed
message: never the driver's words, a traceback, or the Redis URL (it may hold a password).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from producers.client import BrokerError, BrokerUnavailable
from worker.text import printable
from worker.validation import describe_errors, describe_validation_error

log = logging.getLogger("ticketq.web")

UNREACHABLE = "Redis cannot be reached now; nothing was done: try again shortly"
REFUSED = "Redis refused the request (full, or read-only); nothing was done: try again later"


class ErrorDetail(BaseModel):
    status: int
    message: str


class ErrorBody(BaseModel):
    """What every answer other than success holds."""

    error: ErrorDetail


class ApiError(Exception):
    """An answer other than success, with its status and a message for people."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"status": status, "message": printable(message)}}
    return JSONResponse(body, status_code=status, headers=headers)


def json_path(loc: tuple[int | str, ...]) -> str:
    """A field as a JSON path names it: ``tickets[3].ticket.title``; a request error's
    leading ``body``, ``query``, ``path`` or ``header`` left out."""
    if loc and loc[0] in ("body", "query", "path", "header"):
        loc = loc[1:]
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def invalid(exc: ValidationError) -> ApiError:
    """A 422 naming each field of ``exc``."""
    return ApiError(422, describe_validation_error(exc, json_path))


def redis_failure(exc: Exception) -> ApiError:
    """Redis failing, as the 503 a client may retry; the cause is logged by class only."""
    log.warning("answered 503: Redis failed (%s)", type(exc).__name__)
    unreachable = isinstance(exc, BrokerUnavailable | redis.ConnectionError | redis.TimeoutError)
    return ApiError(503, UNREACHABLE if unreachable else REFUSED, {"Retry-After": "5"})


def install_error_handlers(app: FastAPI) -> None:
    """Every error as JSON with one clear message, whatever raised it."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, describe_errors(list(exc.errors()), json_path))

    @app.exception_handler(ValidationError)
    async def _invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return error_response(422, invalid(exc).message)

    @app.exception_handler(redis.RedisError)
    async def _redis(request: Request, exc: redis.RedisError) -> JSONResponse:
        failure = redis_failure(exc)
        return error_response(failure.status, failure.message, failure.headers)

    @app.exception_handler(BrokerError)
    async def _broker(request: Request, exc: BrokerError) -> JSONResponse:
        failure = redis_failure(exc)
        return error_response(failure.status, failure.message, failure.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("answered 500: %s %s", request.method, printable(request.url.path))
        return error_response(500, "internal error; it is logged")
