"""Built-in modality plugins. Importing this package registers them (see `anybind.register_modality`)."""

from anybind.modalities import audio as audio
from anybind.modalities import depth as depth
from anybind.modalities import image as image
from anybind.modalities import imu as imu
from anybind.modalities import pointcloud as pointcloud
from anybind.modalities import text as text
from anybind.modalities import thermal as thermal
