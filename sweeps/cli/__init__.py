"""The harness, the command line: the four commands and what they share (errors and exit status, logging,
standard output)."""
