"""Signing in to the dashboard with a token, and out.

The token is posted once, found in the ``TokenBook`` (constant time), and never kept:
the browser gets a session cookie (HttpOnly, SameSite=Strict, Secure over https) and
Redis a digest of its id. A wrong token is answered as wrong, never echoed. Without
tokens configured nobody is asked to sign in.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response

from ops.web.html import (
    PageRoute,
    Visitor,
    actor,
    local_path,
    redirect,
    render,
    same_origin,
    sessions_of,
    set_cookie,
)
from ops.web.sessions import COOKIE
from worker.settings import Scope

router = APIRouter(route_class=PageRoute, include_in_schema=False)


@router.get("/signin")
def signin_page(request: Request, next: str = "/") -> Response:
    if request.app.state.tokens.open:
        return redirect("/")
    return render(request, "signin.html", None, next=local_path(next), wrong=False)


@router.post("/signin")
def signin(
    request: Request, token: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/"
) -> Response:
    same_origin(request)
    principal = request.app.state.tokens.find(token)
    if principal is None:
        return render(request, "signin.html", None, 401, next=local_path(next), wrong=True)
    sessions = sessions_of(request)
    sessions.close(request.cookies.get(COOKIE))  # signing in again ends the session before
    opened = sessions.open(principal)
    response = redirect(local_path(next))
    set_cookie(request, response, opened.session_id)
    return response


@router.post("/signout")
def signout(request: Request, who: Annotated[Visitor, Depends(actor(Scope.READ))]) -> Response:
    sessions_of(request).close(who.session_id)
    response = redirect("/signin")
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
