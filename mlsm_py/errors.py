"""User-facing errors. The CLI prints their message and exits non-zero; no traceback."""


class MlsmError(Exception):
    """Base class for every error mlsm reports to a user."""


class SpecError(MlsmError):
    """A model or summary definition breaks a rule (name, status, fields, ...)."""


class UnsupportedError(MlsmError):
    """An estimator, step or parameter the SQL compiler cannot express exactly."""


class ParityError(MlsmError):
    """The compiled SQL disagrees with the Python model beyond the tolerance."""


class ContractError(MlsmError):
    """Input data breaks a field contract (type, nullability, range, levels)."""


class ArtifactError(MlsmError):
    """A registered artifact is missing, altered (sha256 mismatch) or holds unknown types."""


class BuildError(MlsmError):
    """`dbt build` failed; the message lists the failing checks."""
