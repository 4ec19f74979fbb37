"""Pipeline: the nightly job's stages chained into resumable steps, gated publishing."""
