"""Model references as users write them: ``NAME/VERSION`` or ``NAME@ALIAS``."""

from __future__ import annotations

import re
from typing import NamedTuple

from icefloe.errors import InvalidNameError

_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}")
_ALIAS = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,254}")


class ModelRef(NamedTuple):
    """A registered model version, by number or by alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"{self.name}@{self.alias}" if self.alias else f"{self.name}/{self.version}"


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is a valid registered model name."""
    if not _MODEL_NAME.fullmatch(name or "") or ".." in name:
        raise InvalidNameError(
            f"invalid model name {name!r}: use letters, digits, '_', '-' and '.', "
            "up to 255 characters"
        )
    return name


def name_filter(name: str) -> str:
    """An MLflow search filter for the model ``name``, quoted so the name stays a value.

    icefloe's own names cannot hold quotes (:func:`validate_model_name`); a model registered
    by other means with a quote in its name cannot be searched by name at all, and is
    refused rather than read as filter syntax.
    """
    if "'" in name or "\\" in name:
        raise InvalidNameError(f"model name {name!r} holds a quote or backslash; it cannot be "
                               "searched in MLflow")
    return f"name = '{name}'"


def validate_alias(alias: str) -> str:
    """Return ``alias`` if it is a valid alias (MLflow reserves ``latest`` and ``vN``)."""
    if not _ALIAS.fullmatch(alias or "") or alias == "latest" or re.fullmatch(r"v\d+", alias):
        raise InvalidNameError(
            f"invalid alias {alias!r}: use letters, digits, '_' and '-', not 'latest' or 'v1'"
        )
    return alias


def parse_model_ref(text: str) -> ModelRef:
    """Parse ``NAME/VERSION`` or ``NAME@ALIAS``.

    Raises:
        InvalidNameError: Anything else, with an example of the expected form.
    """
    if "@" in text:
        name, _, alias = text.partition("@")
        return ModelRef(validate_model_name(name), alias=validate_alias(alias))
    name, sep, version = text.partition("/")
    if not sep or not version.isdigit() or int(version) < 1:
        raise InvalidNameError(
            f"invalid model reference {text!r}: use NAME/VERSION (loan-default/1) "
            "or NAME@ALIAS (loan-default@champion)"
        )
    return ModelRef(validate_model_name(name), version=int(version))
