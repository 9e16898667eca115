"""Built-in modality plugins. Importing this package registers them (see `anybind.register_modality`)."""

from anybind.modalities import image as image
from anybind.modalities import text as text
