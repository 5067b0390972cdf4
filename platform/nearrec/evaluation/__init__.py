"""Offline evaluation: leave-one-out splits, ranking metrics and the collaborative ("cf" vector) model."""
