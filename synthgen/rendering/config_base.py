"""The base of every render config model: unknown keys are errors (pydantic ``extra="forbid"``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A pydantic model that rejects unknown keys, so a typo in a config is an error, not a silent default."""

    model_config = ConfigDict(extra="forbid")
