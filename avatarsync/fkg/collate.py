"""Batches of the keyframe model: ``FKGExample`` chunks packed into one padded batch (``FKGTask.collate``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import InputError
from .aperture import openness_bins, segment_apertures
from .data import FKGExample
from .layout import TokenMeta, collate_packed, crop_window, layout_context, neighbour_ids, pack_utterance


class FKGCollate:
    """``collate`` of ``FKGTask``; uses the task's ``vocab``, ``stride``, ``frame_window``, ``unit_context``,
    ``aperture_bins``, ``cfg.data.unit_key`` and ``_symbols``."""

    def collate(self, items: list[FKGExample]) -> dict[str, Any]:
        vocab, window = self.vocab, self.frame_window
        packed, unit_ids = [], []
        for ex in items:
            units = [vocab.unit_id(s) for s in self._symbols(ex)]
            durs = [vocab.duration_id(d) for d in ex.durations]
            packed.append(pack_utterance(vocab, torch.as_tensor(ex.ref_codes), units, durs,
                                         crop_window(torch.as_tensor(ex.key_codes), window), self.stride))
            unit_ids.append(units)
        batch: dict[str, Any] = collate_packed(packed, vocab.pad_id)
        if self.unit_context:
            batch["context"] = torch.stack([self._layout_context(batch, b, ex, units)
                                            for b, (ex, units) in enumerate(zip(items, unit_ids))])
        if self.aperture_bins:
            batch["aperture"] = torch.stack([self._layout_aperture(batch, b, ex) for b, ex in enumerate(items)])
        batch["n_units"] = torch.tensor([len(ex) for ex in items])
        batch["grid"] = torch.tensor(packed[0].grid)  # the generated cells' grid (the window's)
        batch["ref_grid"] = torch.tensor(packed[0].ref_grid)
        batch["key_frames"] = torch.tensor([k for ex in items for k in (ex.key_frames or range(len(ex)))])
        batch["clip_ids"] = [ex.clip_id for ex in items]
        if all(ex.key_pixels is not None for ex in items):
            batch["key_pixels"] = torch.from_numpy(np.concatenate([ex.key_pixels for ex in items]))
        if all(ex.key_boxes is not None for ex in items):
            batch["key_boxes"] = torch.from_numpy(np.concatenate([ex.key_boxes for ex in items]))
        if all(ex.key_landmarks is not None for ex in items):  # fixed point (1/16 px): the loop may cast floats
            batch["key_landmarks16"] = torch.from_numpy(
                np.rint(np.concatenate([ex.key_landmarks for ex in items]) * 16).astype(np.int32))
        if all(ex.ref_pixels is not None for ex in items):
            batch["ref_pixels"] = torch.from_numpy(np.stack([ex.ref_pixels for ex in items]))
        return batch

    def _layout_context(self, batch: dict[str, Any], b: int, ex: FKGExample, units: list[int]) -> torch.Tensor:
        """Context ids ``[L, 2]`` of batch row ``b``: each unit token's neighbours, the chunk's edge
        units taking their neighbours in the whole utterance (``ex.before`` / ``ex.after``)."""
        key = 0 if self.cfg.data.unit_key == "symbol" else 1
        edges = [None if x is None else self.vocab.unit_id(x[key]) for x in (ex.before, ex.after)]
        neighbours = neighbour_ids(torch.tensor(units), self.vocab.pad_id, *edges)
        meta = TokenMeta(batch["kind"][b], batch["segment"][b], batch["offset"][b])
        return layout_context(meta, neighbours, self.vocab.pad_id)

    def _layout_aperture(self, batch: dict[str, Any], b: int, ex: FKGExample) -> torch.Tensor:
        """Aperture bins ``[L]`` of batch row ``b`` (every token of a segment holds its keyframe's bin)."""
        if ex.key_openness is None:
            raise InputError(f"clip {ex.clip_id} has no truth mouth openness, which aperture_bins needs",
                             "rebuild the FKG token cache from a corpus with truth.npz openness, "
                             "or set aperture_bins: 0")
        meta = TokenMeta(batch["kind"][b], batch["segment"][b], batch["offset"][b])
        return segment_apertures(meta, openness_bins(ex.key_openness, self.aperture_bins))
