"""tvr: text-video retrieval — search videos with natural language and describe videos by retrieving captions."""

__version__ = "0.1.0"
