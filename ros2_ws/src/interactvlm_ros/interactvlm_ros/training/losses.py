"""Training losses (official MV-Loc recipe, spec §8): focal BCE + Dice per view, pixels outside the
render silhouette ignored, plus an optional per-vertex BCE on lifted contact.

Written by hand because torchvision (which has ``sigmoid_focal_loss``) is not a dependency; the
formulas are the standard ones (Lin et al. 2017 focal loss, Milletari et al. 2016 Dice).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_bce(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, alpha: float = 0.5,
              gamma: float = 2.0) -> torch.Tensor:
    """Mean sigmoid focal loss over valid pixels. logits/target/valid [B,V,R,R] -> scalar."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return (loss * valid).sum() / valid.sum().clamp(min=1.0)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Dice loss per view on sigmoid probabilities, averaged over views. [B,V,R,R] -> scalar.

    Views with no GT contact contribute ``sum(p) / (sum(p) + eps)`` (pushes them to empty)."""
    p = torch.sigmoid(logits) * valid
    t = target * valid
    num = 2 * (p * t).flatten(2).sum(-1) + eps
    den = p.flatten(2).sum(-1) + t.flatten(2).sum(-1) + eps
    return (1 - num / den).mean()


def mask_loss(logits, target, valid, focal_weight: float = 2.0, dice_weight: float = 1.0, alpha: float = 0.5,
              gamma: float = 2.0) -> tuple[torch.Tensor, dict]:
    """focal_weight * focal + dice_weight * dice -> (loss, parts)."""
    fl = focal_bce(logits, target, valid, alpha, gamma)
    dl = dice_loss(logits, target, valid)
    return focal_weight * fl + dice_weight * dl, {"focal": float(fl.detach()), "dice": float(dl.detach())}


def lifted_bce(contact: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE between lifted per-vertex contact in [0,1] [B,N] and GT [B,N] (inputs clamped as the official
    human 3D loss does)."""
    c = contact.clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(c, target)


def lifted_loss(contact: torch.Tensor, target: torch.Tensor, seen: torch.Tensor | None = None,
                eps: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Per-vertex loss on lifted contact: BCE + soft Dice (per sample, averaged). contact in [0,1] [B,N] (the
    human ``lift.Lifter`` applied to the predicted logits, differentiable), target [B,N], seen bool [N]: the
    vertices the views show (others are 0 whatever the masks say, so they are left out) -> (loss, parts).
    Dice counters the imbalance (a few hundred contact vertices of 13.7k) that a plain BCE drowns in."""
    if seen is not None:
        contact, target = contact[:, seen], target[:, seen]
    bce = lifted_bce(contact, target)
    dice = soft_dice(contact, target, eps)
    return bce + dice, {"bce": float(bce.detach()), "dice": float(dice.detach())}


def soft_dice(p: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per sample, averaged: p, target [B,N] in [0,1] -> scalar."""
    return (1 - (2 * (p * target).sum(1) + eps) / (p.sum(1) + target.sum(1) + eps)).mean()


def vertex_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> tuple[torch.Tensor, dict]:
    """BCE (on logits) + soft Dice per sample for direct per-vertex predictions (the vertex head):
    logits [B,N], target [B,N] in [0,1] -> (loss, parts). Every vertex counts (no view hides any)."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    dice = soft_dice(torch.sigmoid(logits), target, eps)
    return bce + dice, {"bce": float(bce.detach()), "dice": float(dice.detach())}
