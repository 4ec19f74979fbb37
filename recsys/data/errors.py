"""Data stage: the error every data-loading check raises (defined apart to avoid import cycles)."""

from recsys.errors import UserError


class DataValidationError(UserError, ValueError):
    """Input data that cannot be used; the message says what was expected, found, and where."""

    exit_code = 65  # EX_DATAERR
