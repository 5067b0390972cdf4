"""The read path: recommendations, similar items, search and anonymous sessions.

- :mod:`~nearrec.query.service`: :class:`QueryService`, the facade every entry point uses;
- :mod:`~nearrec.query.methods`: the retrieval methods (:data:`Method`);
- :mod:`~nearrec.query.retrieval`: filtered, exclusion-safe nearest neighbours and the hybrid fusion;
- :mod:`~nearrec.query.collaborative`: the query-time cf vector of a user or session;
- :mod:`~nearrec.query.popular`: the popularity list (cold start);
- :mod:`~nearrec.query.explain`: reasons ("because you liked ...");
- :mod:`~nearrec.query.results`: what is returned, joined with the Postgres rows;
- :mod:`~nearrec.query.schema` and :mod:`~nearrec.query.cache`: the attribute schema and the cached values.
"""
