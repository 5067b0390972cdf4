"""Offline evaluation: leave-one-out splits, ranking metrics and the collaborative model used for "cf" vectors."""
