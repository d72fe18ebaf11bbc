"""Base class for the plain-data records that cross module and process boundaries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    """An immutable record that rejects unknown fields and round-trips through JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")
