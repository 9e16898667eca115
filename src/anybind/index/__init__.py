"""Any-to-any retrieval: `Index` (exact, fast-exact int8 and faiss backends) and `SearchResult`.

The on-disk format is described in `anybind.index.storage`.
"""

from anybind.index.faiss_backend import choose_index_factory as choose_index_factory
from anybind.index.results import Hit as Hit
from anybind.index.results import SearchResult as SearchResult
from anybind.index.storage import FORMAT_VERSION as FORMAT_VERSION
from anybind.index.vector_index import BACKENDS as BACKENDS
from anybind.index.vector_index import Index as Index
