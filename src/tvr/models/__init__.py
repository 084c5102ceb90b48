"""Retrieval methods behind one interface (`tvr.models.base.RetrievalModel`) and their registry."""

from tvr.data.batch import TextBatch, VideoBatch, VideoInputSpec
from tvr.models.base import ModelConfig, RetrievalModel, TextEmb, VideoEmb
from tvr.models.registry import create, load_model, lookup, names, register, save_model

__all__ = [
    "ModelConfig", "RetrievalModel", "TextBatch", "TextEmb", "VideoBatch", "VideoEmb", "VideoInputSpec",
    "create", "load_model", "lookup", "names", "register", "save_model",
]
