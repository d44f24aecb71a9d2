"""The command line: the only place that prints, reads the terminal or exits."""
