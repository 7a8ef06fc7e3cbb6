"""The spec's pydantic models. `Platform` is the root; `RegionSettings` the layered part."""

from compiler.model import base, prebuilt
from compiler.model.base import Model
from compiler.model.platform import Platform, RegionSettings

prebuilt.install(Model)
prebuilt.keep_annotation_codes(base._ANNOTATION_CODE)

__all__ = ["Platform", "RegionSettings"]
