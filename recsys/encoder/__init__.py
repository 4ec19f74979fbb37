"""Stage: encoder."""
