"""``robustood ood`` (not yet implemented)."""
