"""WebDataset shards: pack sample stores into shards with a manifest, verify them, decode them.

Modules, in pipeline order: :mod:`.options` (``--split``, ``--mix``, ``--shard-size``), :mod:`.scan`
(index the stores' records), :mod:`.plan` (splits by subject, source mix, order, shard boundaries),
:mod:`.write` (one shard, atomically) on :mod:`.tarformat` (tar headers and padding; which tar
members readers accept), :mod:`.ray_write` (shards written on Ray Data), :mod:`.resume` (the
output folder and the journal of finished shards), :mod:`.manifest` (manifest, samples index, wids
lists), :mod:`.pack` (the pack pipeline), :mod:`.verify`, :mod:`.codec` (member encoders and
decoders), :mod:`.cli`.

Public API: :func:`pack`, :func:`verify`, :func:`decode` (a ``webdataset`` decoder handler),
:func:`decode_sample`, :func:`decode_member`.
"""

from __future__ import annotations

from ..errors import ShardInputError
from .cli import add_parser
from .codec import decode, decode_member, decode_sample, encode_options, load_record, member_names
from .manifest import FORMAT, MANIFEST, SAMPLES_INDEX
from .options import DEFAULT_SHARD_SIZE, DEFAULT_SPLIT
from .pack import pack
from .resume import PROGRESS
from .verify import verify, verify_shard

__all__ = ["pack", "verify", "verify_shard", "decode", "decode_sample", "decode_member", "load_record", "encode_options",
           "member_names", "ShardInputError", "FORMAT", "MANIFEST", "PROGRESS", "SAMPLES_INDEX",
           "DEFAULT_SPLIT", "DEFAULT_SHARD_SIZE", "add_parser"]
