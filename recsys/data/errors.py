"""Data stage: the error every data-loading check raises (defined apart to avoid import cycles)."""


class DataValidationError(ValueError):
    """Input data that cannot be used; the message says what was expected, found, and where."""
