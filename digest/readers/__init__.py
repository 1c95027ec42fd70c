"""Readers' lifecycle: the list, their subscriptions, sign-up, preferences, privacy and audit."""
