"""avatarsync: phoneme-driven talking-head generation."""

__version__ = "0.1.0"
