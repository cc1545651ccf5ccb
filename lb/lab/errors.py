"""The lab's one error: a lab that could not be built or torn down."""


class LabError(RuntimeError):
    """The lab could not be built, or could not be torn down completely (the message lists what)."""
