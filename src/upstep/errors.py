"""Errors meant for people: each message names the file, what is wrong, and what to do."""


class UpstepError(Exception):
    """Base class of every error upstep reports without a traceback."""


class ModelLoadError(UpstepError):
    pass


class ConfigError(UpstepError):
    pass
