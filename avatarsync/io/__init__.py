"""Video and audio files."""

from .audio import write_wav
from .video import atomic_output, check_writable, probe_mp4, read_video_frames, write_mp4

__all__ = ["atomic_output", "check_writable", "probe_mp4", "read_video_frames", "write_mp4", "write_wav"]
