"""Reading QR codes back in tests: QR symbols only (other formats give false hits on
busy images, e.g. a random 1D barcode read out of a QR's modules)."""

from pathlib import Path

import zxingcpp
from PIL import Image


def decode(image: Image.Image | Path) -> set[str]:
    if isinstance(image, Path):
        image = Image.open(image)
    found = zxingcpp.read_barcodes(image.convert("L"), formats=zxingcpp.BarcodeFormat.QRCode)
    return {r.text for r in found}
