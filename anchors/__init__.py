"""Built-in anchor spaces. Importing this package registers them (see `anybind.register_anchor`)."""

from anybind.anchors import imagebind as imagebind
from anybind.anchors import label_bridge as label_bridge
from anybind.anchors import lit as lit
from anybind.anchors import openclip as openclip
