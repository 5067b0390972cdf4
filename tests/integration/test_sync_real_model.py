"""End to end with the real sentence-transformers model: Postgres rows -> worker -> embedded Qdrant."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from sync_support import add_items, add_user, interact

from nearrec.config import Settings
from nearrec.embedding import configured_model_id, load_embedder
from nearrec.sync.check import check_stores
from nearrec.sync.worker import SyncWorker
from nearrec.vectors.edge import EdgeVectorStore

TEXTS = {
    "space": "Astronauts pilot a starship to a distant galaxy to save humanity from a dying sun.",
    "cooking": "A young chef opens a small restaurant in Paris and learns to bake the perfect bread.",
    "football": "An underdog soccer team fights its way to the championship final.",
    "ghost": "A family moves into an old house haunted by a vengeful ghost.",
}


@pytest.mark.slow
def test_real_model_end_to_end(db: Engine, sessions: sessionmaker[Session], settings: Settings) -> None:
    embedder = load_embedder(settings)  # the bundled all-MiniLM-L6-v2, offline
    assert embedder.dim == 384 and embedder.model_id == configured_model_id(settings)
    ids = add_items(sessions, [{"external_id": k, "text": t} for k, t in TEXTS.items()])
    uid = add_user(sessions, "cosmo", profile="I love science fiction about rockets and planets")
    interact(sessions, uid, [(ids[0], "like", None)])
    with EdgeVectorStore(settings.data_dir / "vectors") as store:
        SyncWorker(sessions, store, embedder, settings).drain()
        assert store.get_metadata("nearrec_items")["embedding_model"] == embedder.model_id
        query = embedder.embed(["a movie about travelling through outer space"])[0]
        hits = store.query("nearrec_items", query, "text", limit=4)
        assert hits[0].payload["external_id"] == "space"
        user = store.retrieve("nearrec_users", [uid], with_vectors=True)[0]
        best = store.query("nearrec_items", np.asarray(user.vector["text"]), "text", limit=1)  # type: ignore[index]
        assert best[0].payload["external_id"] == "space"
        with sessions.begin() as s:
            assert check_stores(s, store, settings, embedder.model_id).ok
