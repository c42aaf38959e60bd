#!/usr/bin/env python3
"""The original design's image loop (its Celery task `process_images`), for the speed benchmark.

Mirrors the task in the original design (low-level design, section 6, "Implementation") call for
call: for each product, for each entry of its comma-separated URL list, sequentially:
entries without "http" are kept as they are; otherwise `requests.get` the image,
`Image.open(BytesIO(content))`, `save(buf, format="JPEG", quality=50)`, and `requests.post` it to
ImgBB with `data={"key": key}, files={"image": buf}`, keeping `response.json()["data"]["url"]`.

Left out, because they would only make the baseline slower (so the measured speed-up is, if
anything, understated): the Django ORM saves to PostgreSQL after each product and at the end,
the Celery dispatch, and the task's three `print` calls per image. Added, so the run is
bounded: a 60 s timeout on each HTTP call (the original has none) and --max-seconds overall.

Prints one JSON object on its last line: ok, rows, images, seconds, images_per_s.

  python3 bench/baseline.py --csv products.csv --imgbb-url http://127.0.0.1:PORT/1/upload \
      [--key x] [--rows 100] [--max-seconds 600]
"""

import argparse
import csv
import json
import sys
import time
from io import BytesIO

import PIL
import requests
from PIL import Image


def read_entries(path, rows):
    """(serial number, input_urls) per CSV row: the original stores the URL list joined by ','."""
    entries = []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)  # header: S. No.,Product Name,Input Image Urls
        for row in reader:
            if len(entries) == rows:
                break
            entries.append((row[0], ",".join(row[2:])))
    return entries


def process_images(entries, imgbb_url, imgbb_api_key, deadline):
    """The original task's loop; returns (images processed, error or None)."""
    images = 0
    for _serial, input_urls_text in entries:
        input_urls = input_urls_text.split(",")
        output_urls = []

        for idx, url in enumerate(input_urls):
            if time.monotonic() > deadline:
                return images, "stopped at --max-seconds"
            if "http" not in url:
                output_urls.append(url)
                continue

            response = requests.get(url.strip(), timeout=60)
            img = Image.open(BytesIO(response.content))
            output_buffer = BytesIO()
            img.save(output_buffer, format="JPEG", quality=50)

            output_buffer.seek(0)

            # Upload to ImgBB
            response = requests.post(
                imgbb_url,
                data={"key": imgbb_api_key},
                files={"image": output_buffer},
                timeout=60,
            )
            output_urls.append(response.json()["data"]["url"])
            images += 1

        _output = ",".join(output_urls)  # entry.output_urls = ...; entry.save()
    return images, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True)
    parser.add_argument("--imgbb-url", required=True)
    parser.add_argument("--key", default="x")
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()

    entries = read_entries(args.csv, args.rows)
    start = time.monotonic()
    try:
        images, error = process_images(
            entries, args.imgbb_url, args.key, start + args.max_seconds
        )
    except Exception as e:  # the original lets the task fail; report it instead
        images, error = 0, f"{type(e).__name__}: {e}"
    seconds = time.monotonic() - start
    result = {
        "ok": error is None,
        "rows": len(entries),
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds if seconds > 0 else 0.0,
        "python": sys.version.split()[0],
        "pillow": PIL.__version__,
        "requests": requests.__version__,
    }
    if error is not None:
        result["error"] = error
    print(json.dumps(result))
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
