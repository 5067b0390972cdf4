"""Keeping Qdrant in line with Postgres: the outbox worker, user vectors, check / repair, reindex."""

from nearrec.model.user_vector import UserVectorParams, build_user_vector, history_weights

__all__ = ["UserVectorParams", "build_user_vector", "history_weights"]
