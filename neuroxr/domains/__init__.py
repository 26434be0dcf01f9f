"""neuroxr.domains."""
