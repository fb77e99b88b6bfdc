"""Modules split for the size rule (issue 12) keep their old import paths: the names other code and
users import from the old module are the same objects as in the new one."""

from __future__ import annotations


def test_split_modules_reexport_their_names():
    from synthgen.humans import build, formats, model
    from synthgen.humans.formats import mhclo, mhmat, obj, target, text
    from synthgen.ingest import frame, pipeline
    from synthgen.shard import codec, decoding

    assert (formats.read_obj, formats.ObjMesh) == (obj.read_obj, obj.ObjMesh)
    assert (formats.read_mhclo, formats.read_mhmat, formats.read_target) == (mhclo.read_mhclo, mhmat.read_mhmat,
                                                                            target.read_target)
    assert (formats.read_text, formats.read_bytes) == (text.read_text, text.read_bytes)
    assert (build.HumanModel, build.MeshPart, build.Rig, build.MaterialDesc) == (model.HumanModel, model.MeshPart,
                                                                               model.Rig, model.MaterialDesc)
    assert (pipeline.process_frame, pipeline.register) == (frame.process_frame, frame.register)
    for name in ("decode", "decode_image", "decode_pil", "decode_member", "decode_sample", "load_record",
                 "EXR_CHANNELS"):
        assert getattr(codec, name) is getattr(decoding, name), name
