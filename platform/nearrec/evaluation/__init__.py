"""Offline evaluation (`nearrec evaluate`): leave-one-out splits, ranking metrics, and the pipeline that runs
every retrieval method through ingest, sync, train and the query service on a scratch database."""
