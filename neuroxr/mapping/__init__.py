"""neuroxr.mapping."""
