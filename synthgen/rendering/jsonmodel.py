"""A pydantic base for the renderer's typed records that also read like their JSON dict.

:class:`.sampling.SampleParams` (what a sample drew) and :class:`.subject.SubjectInfo` (what a loaded
subject measured) are typed models; code written against their JSON form keeps working through
read-only mapping access (``p["yaw_deg"]``, ``"pose" in p``, ``p.get(...)``, ``dict(p)``), which sees
exactly the fields that were set.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class JsonModel(BaseModel):
    """Base model whose set fields are readable as a mapping (unset optional fields are absent)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON form: every field that was set (unused optional sections are absent)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def __getitem__(self, name: str) -> Any:
        if name not in self.model_fields_set:
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return name in self.model_fields_set

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in self.model_fields_set else default

    def __iter__(self):  # like a dict: the keys of the JSON form
        return iter(self.to_json())

    def keys(self):
        return self.to_json().keys()
