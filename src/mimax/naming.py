"""Machine-readable names: the one place where an encoder key such as ``f_θ`` becomes ASCII (``f_theta``).

Human-facing tables keep the paper's symbols; CSV column names, TensorBoard tags and file-name-like
identifiers use :func:`ascii_name`, so that ``pandas``, shells and ``grep`` see plain ASCII. Also the file name
of a run directory's marker (:data:`RUN_MARKER`), shared by the store and data layers.
"""

from __future__ import annotations

import unicodedata

# The file that makes a directory a mimax run (written first by ``mimax.store.rundir``). Here, in the lowest
# layer, because the data layer needs it too: an image-folder scan leaves out a run directory inside the data
# folder (its figures are not training images).
RUN_MARKER = ".mimax-run"


def printable(text: str) -> str:
    """``text`` as valid Unicode: a file name that is not UTF-8 (Latin-1 names from old archives and SMB
    shares are legal on Linux) reaches Python as lone surrogates (``run\\udcff``), which UTF-8 encoders,
    matplotlib and Parquet refuse; each becomes its escape, ``\\udcff``, visible and unambiguous."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def ascii_name(name: str) -> str:
    """``name`` with each non-ASCII letter spelled out: Greek letters by their name (``θ`` -> ``theta``,
    ``ξ`` -> ``xi``), accented letters without their accent, anything else as ``u<hex code>``."""
    out = []
    for ch in name:
        if ch.isascii():
            out.append(ch)
            continue
        uname = unicodedata.name(ch, "")
        if uname.startswith("GREEK"):
            letter = uname.split(" LETTER ")[-1].lower()
            out.append(letter if "SMALL" in uname else letter.capitalize())
            continue
        plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        out.append(plain or f"u{ord(ch):04x}")
    return "".join(out)


def ascii_tag(label: str) -> str:
    """A TensorBoard tag component from a human label: ASCII, spaces and parentheses as ``_``
    (``"SDMI (f_θ)"`` -> ``"SDMI_f_theta"``)."""
    text = ascii_name(label)
    for ch in " ()[],;:":
        text = text.replace(ch, "_")
    while "__" in text:
        text = text.replace("__", "_")
    return text.strip("_")
