"""nearrec: embedding-based recommendations on Postgres + Qdrant."""

__version__ = "0.1.0"
