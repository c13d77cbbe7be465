"""Pydantic models whose direct construction raises ``ConfigurationError`` for bad values."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import ConfigurationError

__all__ = ["Checked", "configuration_error"]


def _problem(err: Any) -> str:
    message = str(err["msg"]).removeprefix("Value error, ")
    where = ".".join(str(part) for part in err["loc"])
    return f"{where}: {message}" if where else message


def configuration_error(model: str, exc: ValidationError) -> ConfigurationError:
    """A pydantic ``ValidationError`` as the ``ConfigurationError`` everything else raises."""
    problems = "; ".join(_problem(err) for err in exc.errors())
    return ConfigurationError(f"invalid {model}: {problems}")


class Checked(BaseModel):
    """A model whose direct construction raises ``ConfigurationError`` for bad values."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise configuration_error(type(self).__name__, exc) from None

    # Only direct calls go through this __init__; nested validation (a price file) keeps
    # pydantic's errors, which name the entry and field. Same flag as pydantic's RootModel.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]
