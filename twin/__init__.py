"""TwinLoop twin package (filled in by later issues)."""
