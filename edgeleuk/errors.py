"""The exception types the CLI turns into a clear message: UserError exits 1 (bad input), UsageError 2 (bad usage)."""


class UserError(Exception):
    """A problem with the user's input: bad path, bad data, bad option, missing package."""


def missing_package(module: str, extra: str) -> UserError:
    """Say exactly which install fixes a missing optional dependency (never install it ourselves)."""
    return UserError(f"{module} is not installed. Install it with: pip install 'edgeleuk[{extra}]'")


class UsageError(UserError):
    """A flag's value or a combination of flags is wrong: exit code 2, as for argparse's own usage errors."""
