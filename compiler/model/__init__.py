"""The spec's pydantic models. `Platform` is the root; `RegionSettings` the layered part."""

from compiler.model.platform import Platform, RegionSettings

__all__ = ["Platform", "RegionSettings"]
