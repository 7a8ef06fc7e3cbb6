"""The spec's pydantic models. `Platform` is the root; `RegionSettings` the layered part."""

from compiler.model import prebuilt
from compiler.model.base import Model
from compiler.model.platform import Platform, RegionSettings

prebuilt.install(Model)

__all__ = ["Platform", "RegionSettings"]
