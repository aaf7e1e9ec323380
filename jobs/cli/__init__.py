"""Shared by every command: argument parsing, AWS clients, output and progress."""
