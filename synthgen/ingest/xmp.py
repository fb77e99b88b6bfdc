"""JPEG XMP extraction, including Adobe "extended XMP".

XMP lives in JPEG APP1 segments. The standard packet starts with ``http://ns.adobe.com/xap/1.0/\\0``
and is limited to one 64 KB segment; longer data (e.g. GDepth depth maps) goes to extended XMP
segments starting with ``http://ns.adobe.com/xmp/extension/\\0`` followed by a 32-character GUID
(the MD5 of the full extended packet, named by ``xmpNote:HasExtendedXMP`` in the standard packet),
a 4-byte big-endian full length and a 4-byte offset, then the chunk. Chunks are stitched by GUID
and offset. Reference: Adobe XMP Specification Part 3, section 1.1.3.1.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

XMP_STD = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT = b"http://ns.adobe.com/xmp/extension/\x00"
RDF = "{http://www.w3.org/1999/02/22-rdf-syntax-ns#}"


class XmpError(ValueError):
    """The file's JPEG structure or XMP cannot be read; the message says why."""


@dataclass
class JpegXmp:
    standard: bytes | None = None
    extended: dict[str, bytes] = field(default_factory=dict)
    end_of_headers: int = 0


def jpeg_xmp(data: bytes) -> JpegXmp:
    """Walk the JPEG marker segments up to the first SOS and collect XMP packets.

    Raises XmpError for data that is not a JPEG or has a broken segment structure, or whose extended
    XMP chunks do not add up to their declared length.
    """
    if data[:2] != b"\xff\xd8":
        raise XmpError("not a JPEG file (no SOI marker)")
    out = JpegXmp()
    chunks: dict[str, dict[int, bytes]] = {}
    sizes: dict[str, int] = {}
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise XmpError(f"broken JPEG segment structure at byte {i}")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xDA, 0xD9):
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2 or i + 2 + length > n:
            raise XmpError(f"JPEG segment at byte {i} runs past the end of the file (truncated?)")
        seg = data[i + 4:i + 2 + length]
        if marker == 0xE1:
            if seg.startswith(XMP_STD):
                out.standard = seg[len(XMP_STD):]
            elif seg.startswith(XMP_EXT) and len(seg) >= len(XMP_EXT) + 40:
                b = seg[len(XMP_EXT):]
                guid = b[:32].decode("ascii", "replace")
                sizes[guid] = int.from_bytes(b[32:36], "big")
                chunks.setdefault(guid, {})[int.from_bytes(b[36:40], "big")] = b[40:]
        i += 2 + length
    out.end_of_headers = i
    for guid, parts in chunks.items():
        blob = b"".join(parts[k] for k in sorted(parts))
        if len(blob) != sizes[guid]:
            raise XmpError(f"extended XMP {guid}: {len(blob)} bytes stitched, {sizes[guid]} declared (missing chunks)")
        out.extended[guid] = blob
    return out


def parse_xml(packet: bytes, what: str = "XMP") -> ET.Element:
    """Parse an XMP packet (``<?xpacket ...?>`` wrapper allowed). Raises XmpError when malformed."""
    text = packet.rstrip(b"\x00 \r\n\t")
    m = re.search(rb"<x:xmpmeta.*</x:xmpmeta>", text, re.S)
    if m:
        text = m.group(0)
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise XmpError(f"{what} is not well-formed XML ({exc})") from exc


def properties(root: ET.Element) -> dict[str, str]:
    """All simple properties of an XMP tree as ``{"{namespace}Name": value}``: attributes of any
    element, and leaf elements with text. Later duplicates do not overwrite earlier ones."""
    props: dict[str, str] = {}
    for el in root.iter():
        for k, v in el.attrib.items():
            if k.startswith("{") and not k.startswith(RDF):
                props.setdefault(k, v)
        if len(el) == 0 and el.text and el.text.strip() and el.tag.startswith("{") and not el.tag.startswith(RDF):
            props.setdefault(el.tag, el.text.strip())
    return props


def read_properties(data: bytes) -> tuple[dict[str, str], JpegXmp]:
    """Merged properties of the standard and the matching extended XMP packet of a JPEG.
    Raises XmpError when the XMP is missing or unreadable."""
    jx = jpeg_xmp(data)
    if jx.standard is None:
        raise XmpError("no XMP packet in the JPEG")
    props = properties(parse_xml(jx.standard, "standard XMP"))
    guid = props.get("{http://ns.adobe.com/xmp/note/}HasExtendedXMP")
    if guid:
        if guid not in jx.extended:
            raise XmpError(f"xmpNote:HasExtendedXMP names {guid} but no such extended XMP is present")
        for k, v in properties(parse_xml(jx.extended[guid], "extended XMP")).items():
            props.setdefault(k, v)
    return props, jx
