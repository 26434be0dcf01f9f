"""neuroxr.features."""
