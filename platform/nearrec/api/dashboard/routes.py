"""Dashboard pages (server-rendered HTML). Handlers are plain ``def``: they block on Postgres and the vector
store, so FastAPI runs them in the threadpool. A request from htmx (``HX-Request``) naming a panel in
``HX-Target`` gets that panel's fragment only; every URL also renders the whole page, so links, the back
button and a browser without JavaScript all work."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from nearrec import __version__
from nearrec.api.dashboard import auth, overview, views
from nearrec.api.deps import State
from nearrec.errors import NearrecError

HERE = Path(__file__).parent
PREFIX = "/dashboard"
router = APIRouter(prefix=PREFIX, include_in_schema=False)
Reader = Annotated[State, Depends(auth.require_read)]
P = ParamSpec("P")
METHOD_PANEL = "method-"


@cache
def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        version=__version__,
        reason_text=views.reason_text,
        attributes=views.attributes,
        contains_min=views.CONTAINS_MIN,
    )
    return env


def root(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + PREFIX


def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(name).render(root=root(request), request=request, **context)
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def html_errors(handler: Callable[P, HTMLResponse]) -> Callable[P, HTMLResponse]:
    """Errors of a page (unknown id, a store that does not answer) as an HTML page, not the API's JSON."""

    @wraps(handler)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> HTMLResponse:
        try:
            return handler(*args, **kwargs)
        except NearrecError as exc:
            request = kwargs["request"]
            assert isinstance(request, Request)
            status = getattr(exc, "http_status", 500)
            return render(request, "error.html", status=status, message=str(exc))

    return wrapper


def panel(request: Request) -> str | None:
    """The panel an htmx request asks for, else None (a whole page)."""
    if request.headers.get("hx-request") != "true" or request.headers.get("hx-history-restore-request"):
        return None
    return request.headers.get("hx-target")


@router.get("", response_class=HTMLResponse)
@html_errors
def overview_page(request: Request, s: Reader) -> HTMLResponse:
    data = overview.overview(s, request.app.state.dashboard_stats)
    return render(request, "overview.html", nav="overview", o=data, model_fields=overview.MODEL_FIELDS)


@router.get("/items", response_class=HTMLResponse)
@html_errors
def items_page(request: Request, s: Reader, q: str = "") -> HTMLResponse:
    return render(request, "items.html", nav="items", search=views.search_items(s, q))


@router.get("/items/{item_id:path}", response_class=HTMLResponse)
@html_errors
def item_page(request: Request, s: Reader, item_id: str, filter: str = "") -> HTMLResponse:
    if panel(request) == "similar":
        similar, error = views.similar_items(s, item_id, filter)
        return render(request, "_similar.html", item_id=item_id, similar=similar, error=error, filter=filter)
    return render(request, "item.html", nav="items", p=views.item_page(s, item_id, filter))


@router.get("/users", response_class=HTMLResponse)
@html_errors
def users_page(request: Request, s: Reader, q: str = "") -> HTMLResponse:
    return render(request, "users.html", nav="users", q=q, users=views.find_users(s, q))


@router.get("/users/{user_id:path}", response_class=HTMLResponse)
@html_errors
def user_page(
    request: Request,
    s: Reader,
    user_id: str,
    page: Annotated[int, Query(ge=1)] = 1,
    filter: str = "",
    diversity: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
    inline: bool = False,
) -> HTMLResponse:
    """The history and the recommendations panel. The panel's lists load lazily: one request per method
    (htmx, panel ``method-<name>``), so the page and each list arrive on their own; ``inline=1`` (the link a
    browser without JavaScript shows) computes them all in this request."""
    part = panel(request)
    if part == "history":
        user = views.user_partial(s, user_id)
        return render(request, "_history.html", user=user, history=views.user_history(s, user, page))
    if part == "recs":
        user = views.user_partial(s, user_id)
        recs = views.recommendations(s, user, filter, diversity, lazy=not inline)
        return render(request, "_recs.html", user=user, recs=recs)
    if part is not None and part.startswith(METHOD_PANEL):
        user = views.user_partial(s, user_id)
        found = views.method_panel(s, user, part.removeprefix(METHOD_PANEL), filter, diversity)
        return render(request, "_method.html", m=found)
    user_page = views.user_page(s, user_id, page, filter, diversity, lazy=not inline)
    return render(request, "user.html", nav="users", p=user_page)


@router.get("/evaluation", response_class=HTMLResponse)
@html_errors
def evaluation_page(request: Request, s: Reader) -> HTMLResponse:
    return render(request, "evaluation.html", nav="evaluation", e=overview.evaluation(s))


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "") -> HTMLResponse:
    return render(request, "login.html", status=200, message=None, next=auth.safe_next(next, root(request)))


@router.post("/login", response_class=HTMLResponse, response_model=None)
async def login(request: Request) -> HTMLResponse | RedirectResponse:
    """The key comes in the form body (never in a URL); a valid one sets the cookie."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    target = auth.safe_next((form.get("next") or [""])[0], root(request))
    s: State = request.app.state.nearrec
    try:
        auth.check(s, key, target)
    except auth.LoginRequired as exc:
        return render(request, "login.html", status=exc.status, message=str(exc), next=target)
    return auth.with_key_cookie(RedirectResponse(target, status_code=303), request, key, root(request))


@router.get("/logout")
def logout(request: Request) -> RedirectResponse:
    response = RedirectResponse(root(request) + "/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path=root(request))
    return response


def login_required(request: Request, exc: auth.LoginRequired) -> HTMLResponse:
    return render(request, "login.html", status=exc.status, message=str(exc), next=exc.next_url)


def key_accepted(request: Request, exc: auth.KeyAccepted) -> RedirectResponse:
    target = auth.safe_next(exc.next_url, root(request))
    return auth.with_key_cookie(RedirectResponse(target, status_code=303), request, exc.key, root(request))
