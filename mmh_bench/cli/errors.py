"""The one exception a command raises for bad user input."""


class CLIError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""
