"""Register the ``diffret`` encoders in Pyserini's command-line tools (filled in by the workflow layer)."""


def register() -> None:
    """Nothing to register until the encoder classes exist."""
