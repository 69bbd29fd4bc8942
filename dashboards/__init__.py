"""TwinLoop dashboards package (filled in by later issues)."""
