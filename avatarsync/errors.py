"""User-facing errors: each names the problem and the fix.

The CLI prints ``error: <problem>`` and ``hint: <fix>`` for these and exits
with status 2, never a traceback. Library code raises the most specific
subclass it can.
"""

from __future__ import annotations


class AvatarSyncError(Exception):
    """Base class for errors caused by user input or environment."""

    def __init__(self, problem: str, hint: str = "") -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint

    def __str__(self) -> str:
        return self.problem if not self.hint else f"{self.problem} ({self.hint})"


class InputError(AvatarSyncError):
    """Bad user input: empty text, corrupt file, unsupported option value."""


class LanguageError(InputError):
    """A language code the component does not support."""


class AudioError(InputError):
    """Audio that cannot be used: unreadable, silent, too short."""


class FaceError(InputError):
    """An image with no usable face, or one that cannot be read."""


class AlignmentError(InputError):
    """A transcript that does not match the audio, or an aligner that failed."""


class BackendUnavailable(AvatarSyncError):
    """An optional backend (whisperx, mmpose, mamba-ssm, ...) is not installed or has no local model."""


class CheckpointError(AvatarSyncError):
    """A checkpoint folder that is missing, incomplete or incompatible."""
