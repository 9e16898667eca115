"""anybind: bind every modality to one frozen image-anchor space, and search anything with anything.

Quick start::

    import anybind
    model = anybind.load("tiny")                       # preset, config file, or bundle folder
    vectors = model.embed("text", ["a dog barking"])   # [N, D] float32, unit norm
"""

from anybind.anchor import Anchor as Anchor
from anybind.config import add_config_dir as add_config_dir
from anybind.anchor import AnchorIdentity as AnchorIdentity
from anybind.embeddings import Embeddings as Embeddings
from anybind.errors import AnchorMismatchError as AnchorMismatchError
from anybind.errors import AnybindError as AnybindError
from anybind.errors import CheckpointError as CheckpointError
from anybind.errors import ConfigError as ConfigError
from anybind.errors import InputError as InputError
from anybind.errors import InputFileError as InputFileError
from anybind.errors import UnknownNameError as UnknownNameError
from anybind.modality import Encoder as Encoder
from anybind.modality import EncoderContext as EncoderContext
from anybind.modality import Modality as Modality
from anybind.modality import ProjectionHead as ProjectionHead
from anybind.index import Index as Index
from anybind.model import BoundModel as BoundModel
from anybind.model import load as load
from anybind.registry import list_anchors as list_anchors
from anybind.registry import list_encoders as list_encoders
from anybind.registry import list_modalities as list_modalities
from anybind.registry import register_anchor as register_anchor
from anybind.registry import register_encoder as register_encoder
from anybind.registry import register_modality as register_modality
from anybind import train as train  # noqa: E402 - `anybind.train.bind(recipe)`; after the core it builds on

__version__ = "0.1.0"
