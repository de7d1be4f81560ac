"""Every error the web service answers, as JSON: ``{"error": {"status", "message"}}``.

A message names what is wrong (the field, the job id) and never echoes a token or the
body it refused; pydantic's 422s become one line naming each field, as the CLI says them.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from worker.text import printable
from worker.validation import bounded, describe_validation_error


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


def _request_errors(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        where = ".".join(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)
        message = "unknown field" if error.get("type") == "extra_forbidden" else error["msg"]
        parts.append(f"{where or 'body'}: {message}")
    return bounded(parts, len(parts))


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
        return error_response(422, _request_errors(exc))

    @app.exception_handler(ValidationError)
    async def _invalid(request: Request, exc: ValidationError) -> JSONResponse:
        return error_response(422, describe_validation_error(exc))
