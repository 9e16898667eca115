"""Validation retrieval metrics: recall@k in both directions between paired vector sets."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def retrieval_recall(queries: torch.Tensor, candidates: torch.Tensor, positives: torch.Tensor,
                     ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Recall@k of ``[Q, D]`` `queries` against ``[C, D]`` `candidates` (both unit-norm).

    `positives` is a ``[Q, C]`` bool matrix of correct matches; a query counts as a hit at k
    when any of its top-k candidates by cosine is a positive. Returns ``{k: recall in [0, 1]}``.
    """
    similarities = queries.float() @ candidates.float().T
    order = similarities.argsort(dim=1, descending=True)
    hits_sorted = positives.gather(1, order)
    return {k: float(hits_sorted[:, :min(k, candidates.shape[0])].any(dim=1).float().mean()) for k in ks}


def paired_recall(features: torch.Tensor, anchor_features: torch.Tensor, input_ids: Sequence[str],
                  partner_ids: Sequence[str], ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """R@k both ways for N validation pairs given per-row ``[N, D]`` vectors and row identities.

    Rows sharing an input (or a partner) are merged, so a clip with two captions is one
    candidate with two correct matches. Returns ``r{k}_modality_to_anchor``,
    ``r{k}_anchor_to_modality`` and the chance level ``chance_r1_modality_to_anchor``.
    """
    inputs = list(dict.fromkeys(input_ids))
    partners = list(dict.fromkeys(partner_ids))
    input_index = {value: i for i, value in enumerate(inputs)}
    partner_index = {value: i for i, value in enumerate(partners)}
    first_input = {input_index[v]: row for row, v in reversed(list(enumerate(input_ids)))}
    first_partner = {partner_index[v]: row for row, v in reversed(list(enumerate(partner_ids)))}
    modality_vectors = features[[first_input[i] for i in range(len(inputs))]]
    anchor_vectors = anchor_features[[first_partner[i] for i in range(len(partners))]]
    positives = torch.zeros(len(inputs), len(partners), dtype=torch.bool)
    for a, b in zip(input_ids, partner_ids):
        positives[input_index[a], partner_index[b]] = True
    forward = retrieval_recall(modality_vectors, anchor_vectors, positives, ks)
    backward = retrieval_recall(anchor_vectors, modality_vectors, positives.T.contiguous(), ks)
    metrics = {f"r{k}_modality_to_anchor": v for k, v in forward.items()}
    metrics.update({f"r{k}_anchor_to_modality": v for k, v in backward.items()})
    metrics["chance_r1_modality_to_anchor"] = float(positives.sum(dim=1).float().mean() / len(partners))
    return metrics
