"""The one exception type the CLI turns into a clear message and exit code 1 (no traceback)."""


class UserError(Exception):
    """A problem with the user's input: bad path, bad data, bad option, missing package."""


def missing_package(module: str, extra: str) -> UserError:
    """Say exactly which install fixes a missing optional dependency (never install it ourselves)."""
    return UserError(f"{module} is not installed. Install it with: pip install 'edgeleuk[{extra}]'")
