"""Dynamic Depth 1.0 JPEGs (Google, 2019; https://developer.android.com/training/camera2/Dynamic-depth-v1.0.pdf).

A Dynamic Depth file is the primary JPEG followed by concatenated items. The primary image's XMP
holds a ``Device:Device`` element with ``Device:Container`` -> ``Container:Directory`` (an ordered
``rdf:Seq`` of ``Container:Item`` with ``Item:Mime``, ``Item:Semantic``, ``Item:Length``,
``Item:Padding``, ``Item:DataURI``; the first item is the primary image) and ``Device:Cameras`` ->
``Camera:Camera`` elements with ``Camera:DepthMap`` (``DepthMap:Format`` RangeInverse/RangeLinear,
``Near``, ``Far``, ``Units`` Meters/Diopters/None, ``MeasureType`` OpticalAxis/OpticRay,
``DepthURI``, ``ConfidenceURI``) and optionally ``Camera:ImagingModel`` (``FocalLengthX/Y`` in
pixels for ``ImageWidth x ImageHeight``, ``PrincipalPointX/Y`` as fractions of the image size).

Items are located from the end of the file: item k starts at ``file size - sum(Length + Padding of
items k..n)``. Depth decodes like GDepth (:func:`~.gdepth.decode_range`); it is metric only when
``Units`` is ``Meters`` (or ``Diopters``: depth = 1 / value); ``None`` (common in real Google Camera
portraits) gives relative depth. No real Dynamic Depth file ships with synthgen's tests: the test
fixture was constructed following the specification (see ``tests/fixtures/dynamic_depth``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..common import FrameError, FrameRef, LoadedFrame, K_from_exif, display_path, make_K, open_image, read_bytes
from ..xmp import XmpError, jpeg_xmp, parse_xml
from . import resolve_K
from .gdepth import GDepthReader, decode_range, normalised, planar_depth

NS_DEVICE = "http://ns.google.com/photos/dd/1.0/device/"
NS_CONTAINER = "http://ns.google.com/photos/dd/1.0/container/"
NS_ITEM = "http://ns.google.com/photos/dd/1.0/item/"
NS_CAMERA = "http://ns.google.com/photos/dd/1.0/camera/"
NS_DEPTH = "http://ns.google.com/photos/dd/1.0/depthmap/"
NS_IMAGING = "http://ns.google.com/photos/dd/1.0/imagingmodel/"


def _get(el: ET.Element, ns: str, name: str) -> str | None:
    """Property ``ns:name`` of an element: attribute or child element text."""
    v = el.attrib.get(f"{{{ns}}}{name}")
    if v is None:
        child = el.find(f"{{{ns}}}{name}")
        if child is not None and child.text:
            v = child.text.strip()
    return v


def parse_dynamic_depth(data: bytes) -> dict:
    """Parse a Dynamic Depth JPEG's directory and first depth map.

    Returns ``{"items": [{mime, semantic, length, padding, uri, offset}], "depth": {..DepthMap
    properties..}, "imaging": {..} | None}``. Raises XmpError when the XMP or the directory is
    missing or inconsistent with the file size.
    """
    jx = jpeg_xmp(data)
    packets = [p for p in [jx.standard, *jx.extended.values()] if p]
    if not packets:
        raise XmpError("no XMP packet in the JPEG")
    roots = [parse_xml(p) for p in packets]
    items_el = []
    for r in roots:
        items_el += list(r.iter(f"{{{NS_CONTAINER}}}Item"))
    if not items_el:
        raise XmpError("no Container:Directory items (not a Dynamic Depth file)")
    items = []
    for el in items_el:
        try:
            items.append({"mime": _get(el, NS_ITEM, "Mime"), "semantic": _get(el, NS_ITEM, "Semantic"),
                          "length": int(_get(el, NS_ITEM, "Length") or 0),
                          "padding": int(_get(el, NS_ITEM, "Padding") or 0), "uri": _get(el, NS_ITEM, "DataURI")})
        except ValueError as exc:
            raise XmpError(f"Container:Item with a non-integer Length/Padding ({exc})") from exc
    end = len(data)
    for it in reversed(items[1:]):
        end -= it["length"] + it["padding"]
        it["offset"] = end
        if it["length"] <= 0:
            raise XmpError(f"Container:Item {it['uri'] or it['mime']} has no Item:Length")
    if end < jx.end_of_headers:
        raise XmpError("Container:Directory item lengths exceed the file size (truncated file?)")
    items[0]["offset"], items[0]["length"] = 0, end
    depth_el = None
    for r in roots:
        depth_el = next(r.iter(f"{{{NS_CAMERA}}}DepthMap"), None)
        if depth_el is not None:
            break
    if depth_el is None:
        raise XmpError("no Camera:DepthMap element")
    depth = {k: _get(depth_el, NS_DEPTH, k) for k in
             ("Format", "Near", "Far", "Units", "MeasureType", "DepthURI", "ConfidenceURI", "ItemSemantic")}
    imaging = None
    for r in roots:
        im_el = next(r.iter(f"{{{NS_CAMERA}}}ImagingModel"), None)
        if im_el is not None:
            imaging = {k: _get(im_el, NS_IMAGING, k) for k in
                       ("FocalLengthX", "FocalLengthY", "PrincipalPointX", "PrincipalPointY", "ImageWidth",
                        "ImageHeight")}
            break
    return {"items": items, "depth": depth, "imaging": imaging}


def _item(parsed: dict, uri: str | None, semantic: str) -> dict | None:
    items = parsed["items"][1:]
    if uri:
        for it in items:
            if it["uri"] == uri:
                return it
    return next((it for it in items if (it["semantic"] or "").lower() == semantic.lower()), None)


class DynamicDepthReader(GDepthReader):
    name = "dynamic-depth"
    description = "Dynamic Depth 1.0 JPEG (XMP Container:Directory with appended depth item)"
    needle = b"http://ns.google.com/photos/dd/1.0/"

    def detect(self, source: Path) -> bool:
        from .gdepth import jpeg_candidates, sniff

        return any(p.suffix.lower() in self.exts and sniff(p, self.needle) for p in jpeg_candidates(source)[:50])

    def load(self, ref: FrameRef, opts) -> LoadedFrame:
        path = Path(ref.files["photo"])
        data = read_bytes(path, "photo")
        name = display_path(path.name)
        try:
            dd = parse_dynamic_depth(data)
        except XmpError as exc:
            raise FrameError("unreadable_xmp", f"{name}: {exc}") from exc
        p = dd["depth"]
        it = _item(dd, p.get("DepthURI"), "Depth")
        if it is None:
            raise FrameError("no_depth", f"{name}: Camera:DepthMap names no Container:Item holding the depth")
        try:
            near, far = float(p["Near"]), float(p["Far"])
        except (TypeError, ValueError) as exc:
            raise FrameError("unreadable_xmp", f"{name}: DepthMap:Near/Far missing or not numbers") from exc
        fmt = p.get("Format") or "RangeInverse"
        dim = open_image(data[it["offset"]:it["offset"] + it["length"]], f"{name} depth item", "depth")
        dn, bits = normalised(dim)
        try:
            depth = decode_range(dn, fmt, near, far)
        except ValueError as exc:
            raise FrameError("unreadable_xmp", f"{name}: DepthMap:Format: {exc}") from exc
        conf_it = _item(dd, p.get("ConfidenceURI"), "Confidence") if p.get("ConfidenceURI") else None
        if conf_it is not None:
            cim = open_image(data[conf_it["offset"]:conf_it["offset"] + conf_it["length"]], f"{name} confidence", "depth")
            conf, _ = normalised(cim)
            if conf.shape == depth.shape:
                depth = np.where(conf > 0, depth, 0).astype(np.float32)
        units = (p.get("Units") or "None").strip()
        metric = units.lower() in ("meters", "metres", "diopters")
        if units.lower() == "diopters":
            depth = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-12), 0).astype(np.float32)
        primary = open_image(data[: dd["items"][0]["length"]], name, "rgb")
        rgb = np.asarray(primary.convert("RGB"))
        h, w = depth.shape
        fallback = None
        im = dd["imaging"]
        if im and im.get("FocalLengthX") and im.get("ImageWidth"):
            try:
                iw, ih = float(im["ImageWidth"]), float(im["ImageHeight"])
                fx = float(im["FocalLengthX"]) * w / iw
                fy = float(im.get("FocalLengthY") or im["FocalLengthX"]) * h / ih
                ppx, ppy = float(im.get("PrincipalPointX") or 0.5), float(im.get("PrincipalPointY") or 0.5)
                fallback = (make_K(fx, fy, ppx * w - 0.5, ppy * h - 0.5),
                            "Dynamic Depth Camera:ImagingModel (scaled to the depth resolution)")
            except (TypeError, ValueError, ZeroDivisionError):
                fallback = None
        if fallback is None:
            fallback = K_from_exif(primary, w, h)
        K, ksrc = resolve_K(ref.info.get("intr"), w, h, opts, fallback)
        measure = p.get("MeasureType") or "OpticalAxis"
        depth = planar_depth(depth, K, measure, name, ray_measures=("opticray", "opticalray"))
        capture = {"format": self.name, "sensor": "phone camera (Dynamic Depth 1.0)",
                   "source_files": {"photo": path.name},
                   "depth_units": (f"Dynamic Depth {fmt}, near={near:g}, far={far:g}, Units={units}; "
                                   + ("metres" if metric else "relative (Units is not Meters)")),
                   "raw_to_metres": None,
                   "dynamic_depth": {"format": fmt, "near": near, "far": far, "units": units, "measure_type": measure,
                                     "depth_item": {k: it[k] for k in ("mime", "semantic", "uri", "length")},
                                     "depth_bits": bits, "items": len(dd["items"])},
                   "registration": "Dynamic Depth: depth map corresponds to the primary image; RGB resampled to depth size"}
        return LoadedFrame(rgb=rgb, depth=depth, K=K, metric=metric, capture=capture, depth_bits=bits,
                           registered=True, intrinsics_source=ksrc,
                           sensor_range_m=(min(near, far), max(near, far)) if metric and units.lower() != "diopters" else None,
                           depth_extra={"encoding": fmt, "near": near, "far": far, "file_units": units})
