"""featdefense: a reproducible pipeline for 'Feature Losses for Adversarial Robustness'."""

__version__ = "0.1.0"


class FeatdefenseError(Exception):
    """An error the user can act on: the command line prints its message, not a traceback."""
