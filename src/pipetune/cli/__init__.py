"""Command-line interface (typer + rich). Each command group lives in its own module."""
