"""The web dashboard at ``/dashboard``: server-rendered pages (Jinja2) with a little htmx, every asset served
by nearrec itself (``static/``: the vendored htmx and the stylesheet), the API's keys and read scope."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Add the dashboard's routes, static files and its two auth answers (login page, key cookie)."""
    from starlette.staticfiles import StaticFiles

    from nearrec.api.dashboard import auth, overview, routes

    app.state.dashboard_stats = overview.StatsCache()
    app.include_router(routes.router)
    app.mount(
        f"{routes.PREFIX}/static", StaticFiles(directory=routes.HERE / "static"), name="dashboard-static"
    )
    app.add_exception_handler(auth.LoginRequired, cast(Any, routes.login_required))
    app.add_exception_handler(auth.KeyAccepted, cast(Any, routes.key_accepted))


__all__ = ["mount"]
