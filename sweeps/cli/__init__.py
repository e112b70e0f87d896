"""The harness, the command line: one policy for errors, logging, signals and exit codes."""
