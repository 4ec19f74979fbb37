"""Stage: collab."""
