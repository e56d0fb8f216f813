"""Errors and readers every layer shares (torch-free)."""
import yaml


class UserError(Exception):
    """A problem with the user's input; ``train.py`` and the tools print it as one line instead of a traceback."""


def read_yaml(path):
    """The mapping in a yaml file ({} when empty); a syntax error is a one-line ``UserError`` naming the file."""
    with open(path) as f:
        try:
            return yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise UserError(f"{path} is not valid yaml: {str(e).splitlines()[0]}") from e
