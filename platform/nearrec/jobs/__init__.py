"""Jobs: long-running units of work that own their transactions (train)."""
