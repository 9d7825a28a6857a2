"""``robustood attack`` (not yet implemented)."""
