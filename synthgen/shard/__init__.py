"""WebDataset shards: pack sample stores into shards with a manifest, verify them, decode them.

Modules: :mod:`.plan` (scan stores, splits by subject, source mix, shard boundaries), :mod:`.write`
(one shard, atomically), :mod:`.ray_write` (shards written on Ray Data), :mod:`.pack` (the pack
pipeline, resume), :mod:`.verify`, :mod:`.codec` (member encoders and decoders), :mod:`.cli`.

Public API: :func:`pack`, :func:`verify`, :func:`decode` (a ``webdataset`` decoder handler),
:func:`decode_sample`, :func:`decode_member`.
"""

from __future__ import annotations

from ..errors import ShardInputError
from .cli import add_parser
from .codec import decode, decode_member, decode_sample, encode_options, member_names
from .pack import DEFAULT_SHARD_SIZE, DEFAULT_SPLIT, FORMAT, MANIFEST, PROGRESS, SAMPLES_INDEX, pack
from .verify import verify, verify_shard

__all__ = ["pack", "verify", "verify_shard", "decode", "decode_sample", "decode_member", "encode_options",
           "member_names", "ShardInputError", "FORMAT", "MANIFEST", "PROGRESS", "SAMPLES_INDEX",
           "DEFAULT_SPLIT", "DEFAULT_SHARD_SIZE", "add_parser"]
