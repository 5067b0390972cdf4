"""HTTP routes, one module per area. Handlers are plain ``def`` (they block on Postgres and the vector store)
and run in the threadpool; they take the app state from :mod:`nearrec.api.deps`."""

from fastapi import APIRouter

from nearrec.api.routes import interactions, items, ops, recommend, users

router = APIRouter()
for area in (recommend, items, users, interactions, ops):
    router.include_router(area.router)

__all__ = ["router"]
