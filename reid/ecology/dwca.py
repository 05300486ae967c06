"""A Darwin Core Archive of a gallery's sightings, for GBIF and national biodiversity portals.

The archive is a zip of ``occurrence.txt`` (the Occurrence core, tab-separated, one row per
photo), ``meta.xml`` (which column is which Darwin Core term) and ``eml.xml`` (the dataset's
metadata). Each enrolled photo is one occurrence of a named organism (``organismID``); the
photo's place becomes ``decimalLatitude``/``decimalLongitude`` where it is written as
``lat, lon`` or named in a sites file, and ``locality`` otherwise.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from xml.etree import ElementTree as ET

from reid.errors import ReIDError

DWC = "http://rs.tdwg.org/dwc/terms/"
OCCURRENCE = DWC + "Occurrence"
# column order of occurrence.txt; the first (occurrenceID) is the core id
TERMS = (
    "occurrenceID",
    "basisOfRecord",
    "scientificName",
    "organismID",
    "eventDate",
    "eventTime",
    "locality",
    "decimalLatitude",
    "decimalLongitude",
    "geodeticDatum",
    "recordedBy",
    "identificationVerificationStatus",
    "identifiedBy",
    "associatedMedia",
    "occurrenceRemarks",
)
_LATLON = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*[,; ]\s*(-?\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class Occurrence:
    """One photo as a Darwin Core occurrence (the fields a gallery knows)."""

    photo_id: str  # stable within the gallery: its SHA-256
    individual: str
    date: str
    time: str = ""
    location: str = ""
    observer: str = ""
    media: str = ""
    remarks: str = ""


def read_sites(path: str | Path) -> dict[str, tuple[float, float]]:
    """A sites CSV ``site,latitude,longitude`` (decimal degrees, WGS84)."""
    path = Path(path)
    if not path.is_file():
        raise ReIDError(f"{path}: no such sites file")
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    sites = {}
    for i, row in enumerate(rows, start=2):
        try:
            lat, lon = float(row["latitude"]), float(row["longitude"])
        except (KeyError, TypeError, ValueError):
            raise ReIDError(
                f"{path}: row {i}: a sites file needs site, latitude and longitude "
                "in decimal degrees"
            ) from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise ReIDError(
                f"{path}: row {i} ({row['site']}): {lat}, {lon} is not a latitude "
                "and longitude in decimal degrees"
            )
        sites[row["site"].strip()] = (lat, lon)
    return sites


def coordinates(location: str, sites: dict[str, tuple[float, float]]) -> tuple[float, float] | None:
    """(lat, lon) of a sighting's place: a named site, or ``lat, lon`` written out."""
    if location in sites:
        return sites[location]
    m = _LATLON.match(location or "")
    if m:
        lat, lon = float(m.group(1)), float(m.group(2))
        if -90 <= lat <= 90 and -180 <= lon <= 180:
            return lat, lon
    return None


def write_dwca(
    occurrences: Sequence[Occurrence],
    path: str | Path,
    *,
    scientific_name: str,
    title: str,
    sites: dict[str, tuple[float, float]] | None = None,
    creator: str = "",
    basis: str = "HumanObservation",
    verification: str = "verified",
    dataset_id: str = "",
) -> Path:
    """Write the archive to ``path`` (a .zip; written whole, then renamed). Every row's
    ``identificationVerificationStatus`` is ``verification``: a gallery's photos were enrolled
    by a person, from a manifest or by confirming a proposed match."""
    sites = sites or {}
    buf = io.StringIO()
    out = csv.writer(
        buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_NONE, escapechar="\\"
    )
    out.writerow(TERMS)
    for o in occurrences:
        where = coordinates(o.location, sites)
        row = {
            "occurrenceID": f"urn:reid:{dataset_id or 'gallery'}:{o.photo_id}",
            "basisOfRecord": basis,
            "scientificName": scientific_name,
            "organismID": o.individual,
            "eventDate": o.date[:10] if _is_date(o.date) else "",
            "eventTime": o.time,
            "locality": "" if where and o.location not in sites else o.location,
            "decimalLatitude": f"{where[0]:.6f}" if where else "",
            "decimalLongitude": f"{where[1]:.6f}" if where else "",
            "geodeticDatum": "WGS84" if where else "",
            "recordedBy": o.observer,
            "identificationVerificationStatus": verification,
            "identifiedBy": "photo re-identification (reid), confirmed by a person",
            "associatedMedia": o.media,
            "occurrenceRemarks": o.remarks,
        }
        out.writerow([_clean(row[t]) for t in TERMS])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("occurrence.txt", buf.getvalue())
        z.writestr("meta.xml", _meta())
        z.writestr("eml.xml", _eml(title, creator, scientific_name, dataset_id))
    tmp.replace(path)
    return path


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat((text or "")[:10])
        return True
    except ValueError:
        return False


def _clean(value: str) -> str:
    return re.sub(r"[\t\r\n]+", " ", str(value or ""))


def _meta() -> str:
    ET.register_namespace("", "http://rs.tdwg.org/dwc/text/")
    ns = "{http://rs.tdwg.org/dwc/text/}"
    archive = ET.Element(f"{ns}archive", {"metadata": "eml.xml"})
    core = ET.SubElement(
        archive,
        f"{ns}core",
        {
            "encoding": "UTF-8",
            "fieldsTerminatedBy": "\\t",
            "linesTerminatedBy": "\\n",
            "fieldsEnclosedBy": "",
            "ignoreHeaderLines": "1",
            "rowType": OCCURRENCE,
        },
    )
    ET.SubElement(ET.SubElement(core, f"{ns}files"), f"{ns}location").text = "occurrence.txt"
    ET.SubElement(core, f"{ns}id", {"index": "0"})
    for k, term in enumerate(TERMS):
        ET.SubElement(core, f"{ns}field", {"index": str(k), "term": DWC + term})
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(archive, encoding="unicode")


def _eml(title: str, creator: str, scientific_name: str, dataset_id: str) -> str:
    eml_ns = "https://eml.ecoinformatics.org/eml-2.2.0"
    ET.register_namespace("eml", eml_ns)
    root = ET.Element(
        f"{{{eml_ns}}}eml",
        {
            "packageId": dataset_id or str(uuid.uuid4()),
            "system": "reid",
            "{http://www.w3.org/XML/1998/namespace}lang": "en",
        },
    )
    dataset = ET.SubElement(root, "dataset")
    ET.SubElement(dataset, "title").text = title
    person = ET.SubElement(ET.SubElement(dataset, "creator"), "individualName")
    ET.SubElement(person, "surName").text = creator or "unknown"
    ET.SubElement(dataset, "pubDate").text = date.today().isoformat()
    abstract = ET.SubElement(ET.SubElement(dataset, "abstract"), "para")
    abstract.text = (
        f"Photographic sightings of individually identified {scientific_name}, "
        "one occurrence per photo; organismID names the individual."
    )
    contact = ET.SubElement(ET.SubElement(dataset, "contact"), "individualName")
    ET.SubElement(contact, "surName").text = creator or "unknown"
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def occurrences_of_gallery(gallery_dir: str | Path) -> list[Occurrence]:
    """Every enrolled photo of a gallery as an occurrence (dates from EXIF where missing)."""
    from reid.ecology.sightings import exif_date
    from reid.gallery import Gallery

    with Gallery.open(gallery_dir) as g:
        images = g.images()
    return [
        Occurrence(
            im.sha256,
            im.individual,
            im.date or exif_date(im.path),
            im.time,
            im.location,
            im.observer,
            Path(im.source_path).name,
            im.condition,
        )
        for im in images
    ]
