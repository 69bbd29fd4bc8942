"""TwinLoop command-line interface."""
