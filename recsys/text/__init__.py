"""Stage: text."""
