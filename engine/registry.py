"""Name -> class registries (Dassl semantics: a class registers under its own name)."""
import difflib

from .utils.tools import UserError


class UnknownName(UserError, ValueError):
    """A name no class is registered under (a user error: one line, exit 2)."""


class Registry:
    def __init__(self, kind):
        self.kind = kind
        self._map = {}

    def register(self, obj=None, name=None, force=False):
        """Use as ``@REG.register()`` or ``@REG.register(name="Alias")``; a class may hold several names."""

        def deco(cls):
            key = name or cls.__name__
            if key in self._map and not force and self._map[key] is not cls:
                raise KeyError(f'{self.kind} "{key}" is already registered')
            self._map[key] = cls
            return cls

        return deco(obj) if obj is not None else deco

    def get(self, name):
        if name not in self._map:
            raise UnknownName(unknown_choice_message(self.kind, name, self.registered_names()))
        return self._map[name]

    def registered_names(self):
        return sorted(self._map)

    def __contains__(self, name):
        return name in self._map


def unknown_choice_message(kind, value, choices):
    close = difflib.get_close_matches(str(value), list(choices), n=3, cutoff=0.4)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown {kind} {value!r}.{hint} Available: {', '.join(choices)}"
