"""Sound negatives: a caption that names a sound must not match its own clip with another clip's sound.

Captions that name a sound are few (a third of the synthetic world's, far fewer in real datasets),
and the contrastive loss can almost always tell a batch's videos apart by what they show, so a model
with an audio expert learns to lean on it only as far as it must. MMT then gives audio little weight,
and the weight it gives falls further whenever another side gets stronger (a fully fine-tuned text
encoder took the audio share from 0.20 to 0.13 and the sound column from 49 to 20). This makes the
contrast out of every training pair whose caption names exactly one sound (`sound_of`: common English
words, `SOUNDS`): its own clip with the audio streams of another clip of the batch whose caption
names a different sound (`donors`) is a negative for that caption alone. The loss is the two-way
softmax between the pair and the re-dubbed clip on the model's logit scale (`sound_loss`), averaged
over the batch's sound captions and added to the contrastive loss with a weight
(`train.sound_negatives`). It needs nothing but captions and the audio stream, so it works on any
dataset whose captions say what is heard; models without an audio stream skip it (`audio_streams`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import Tensor

from tvr.data.batch import VideoBatch
from tvr.data.streams import parse_stream
from tvr.models.base import RetrievalModel, TextEmb, VideoEmb
from tvr.models.losses import preferred_pair_loss
from tvr.phrases import phrase_pattern, value_of

AUDIO_ENCODER = "audio"  # the feature-store encoder whose streams carry the sound

# value -> the words or phrases that name it (a caption naming two values is left out); words with a
# common meaning that is not a sound are not listed
SOUNDS: dict[str, tuple[str, ...]] = {
    "silence": ("silence", "silent", "silently", "quiet", "quietly", "no sound", "without sound", "without any sound",
                "soundless", "mute", "muted"),
    "beep": ("beep", "beeps", "beeping", "beeped", "bleep", "bleeps"),
    "hum": ("hum", "hums", "humming", "hummed", "droning", "buzz", "buzzing"),  # not "drone": also a flying one
    "music": ("music", "musical", "song", "songs", "singing", "sings", "melody"),
    "speech": ("speech", "speaking", "speaks", "talking", "talks", "voice", "voices", "narrator", "narration"),
    "applause": ("applause", "applauding", "clapping", "claps"),
    "laughter": ("laughter", "laughing", "laughs"),
    "engine": ("engine", "engines", "motor", "revving"),
    "siren": ("siren", "sirens"),
    "barking": ("barks", "barking"),  # not "bark": also a tree's
    "bell": ("bell", "bells", "ringing"),  # not "rings": also shapes
    "whistle": ("whistle", "whistles", "whistling"),
}
_VALUE_OF = value_of(SOUNDS)
_PATTERN = phrase_pattern(_VALUE_OF)


def sound_of(caption: str) -> str | None:
    """The one sound `caption` names (a `SOUNDS` value), or None if it names none or several."""
    values = {_VALUE_OF[m.group(0).lower()] for m in _PATTERN.finditer(caption)}
    return values.pop() if len(values) == 1 else None


def donors(captions: Sequence[str]) -> list[tuple[int, int]]:
    """(row, donor row) for every caption that names one sound and has a batch-mate naming another: the
    first such row after it, cyclically (deterministic, and spread over the batch's sounds)."""
    sounds = [sound_of(c) for c in captions]
    named = [i for i, s in enumerate(sounds) if s is not None]
    out = []
    for k, i in enumerate(named):
        later = named[k + 1:] + named[:k]
        j = next((j for j in later if sounds[j] != sounds[i]), None)
        if j is not None:
            out.append((i, j))
    return out


def audio_streams(model: RetrievalModel) -> tuple[str, ...]:
    """The stream names of `model`'s input that carry sound (encoder "audio", with or without options)."""
    return tuple(s for s in model.input_spec().streams if parse_stream(s)[0] == AUDIO_ENCODER)


def redubbed(batch: VideoBatch, rows: Sequence[int], donor_rows: Sequence[int], streams: Sequence[str]) -> VideoBatch:
    """The clips at `rows`, each with the sound streams (features, mask, timestamps) of its donor."""
    out = batch.select(list(rows))
    donors_at = torch.as_tensor(list(donor_rows), dtype=torch.long)
    features = dict(out.features)
    for name in streams:
        for key in (name, f"{name}_mask", f"{name}_timestamps"):
            if key in features:
                features[key] = batch.features[key][donors_at]
    return dataclasses.replace(out, features=features)


def sound_loss(model: RetrievalModel, text: TextEmb, video: VideoEmb, dubbed: VideoEmb, denominator: int) -> Tensor:
    """Σ over the given pairs of −log softmax(pair, re-dubbed clip)[pair], divided by `denominator`
    (the number of sound captions in the whole batch; see `order_negatives.order_loss`)."""
    return preferred_pair_loss(model, text, video, text, dubbed, denominator)
