"""TwinLoop control package (filled in by later issues)."""
