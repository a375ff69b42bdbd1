"""Regenerate the README's claim-card screenshot: one card of the explain page, as headless Chromium draws it.

    python scripts/screenshot_claim.py                 # claim 1 of explain/index.html -> docs/images/claim-card.png
    python scripts/screenshot_claim.py --claim 5 --page explain-full/index.html --out /tmp/card.png

The page opened as ``index.html#only-claim-N`` shows that card alone. Without the page, run
``gradientflow explain --mode quick -o explain`` first (or ``bash scripts/main.sh``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# No network, no profile sync, no first-run UI: the page draws from the file alone.
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
    "--disable-component-update", "--disable-sync", "--virtual-time-budget=10000", "--hide-scrollbars",
]  # fmt: skip


def _trim_bottom(path: Path, margin: int = 16) -> None:
    """Cut the empty page background below the card (needs Pillow, which matplotlib brings)."""
    try:
        from PIL import Image
    except ImportError:
        return
    image = Image.open(path).convert("RGB")
    width, height = image.size
    background = image.getpixel((2, height - 1))
    bottom = height
    while bottom > 1 and all(image.getpixel((x, bottom - 1)) == background for x in range(0, width, 4)):
        bottom -= 1
    image.crop((0, 0, width, min(height, bottom + margin))).save(path, optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claim", type=int, default=1, choices=range(1, 10), help="which card (default 1)")
    parser.add_argument("--page", type=Path, default=ROOT / "explain" / "index.html", help="the explain page")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "claim-card.png")
    parser.add_argument("--size", default="1300,980", help="window width,height in px (the card's height fits 980)")
    args = parser.parse_args()
    if not args.page.exists():
        print(f"no page at {args.page}: run `gradientflow explain --mode quick -o explain` first", file=sys.stderr)
        return 2
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} not found: install chromium to take the screenshot", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    url = f"{args.page.resolve().as_uri()}#only-claim-{args.claim}"
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", f"--window-size={args.size}",
             f"--screenshot={args.out}", url],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
    if done.returncode != 0 or not args.out.exists():
        print(done.stderr[-2000:], file=sys.stderr)
        return 1
    _trim_bottom(args.out)
    print(f"wrote {args.out} (claim {args.claim} of {args.page})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
