"""Stage: ranking."""
