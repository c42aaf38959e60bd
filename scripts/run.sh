#!/usr/bin/env bash
# The run command: installs what is missing, builds, starts `imgproc serve` on
# http://127.0.0.1:8000 (SQLite + local disk under ./data), and shows the main job working
# end to end on the bundled example (no internet needed). Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j"$(nproc)" --target imgproc
bin=build/release/imgproc
port="${PORT:-8000}"
example_port="${EXAMPLE_PORT:-8001}"

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The example images are served from 127.0.0.1, which imgproc refuses by default (SSRF
# protection), so this local demo allows private URLs.
python3 -m http.server "$example_port" --bind 127.0.0.1 --directory examples/images >/dev/null 2>&1 &
pids+=($!)
ALLOW_PRIVATE_URLS=1 PORT="$port" "$bin" serve &
pids+=($!)

base="http://127.0.0.1:$port"
for _ in $(seq 100); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done

echo
mkdir -p data
echo "== Submitting examples/products.csv (the original design's format) =="
sed "s#http://127.0.0.1:8001#http://127.0.0.1:$example_port#g" examples/products.csv > data/example.csv
cat data/example.csv
answer=$(curl -fsS -F csv_file=@data/example.csv "$base/api/p/upload/")
echo "$answer"
id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["request_id"])' "$answer")
for _ in $(seq 300); do
  status=$(curl -fsS "$base/status/$id/")
  python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["status"] != "completed")' "$status" && break
  sleep 0.2
done
echo
echo "== curl $base/status/$id/ =="
python3 -m json.tool <<<"$status"
echo
echo "== Compressed images (input -> output bytes) =="
python3 - "$status" <<'PY'
import json, sys, urllib.request
for p in json.loads(sys.argv[1])["products"]:
    for src, out in zip(p["Input Image Urls"].split(","), (p["Output Image Urls"] or "").split(",")):
        if not out.startswith("http"):
            print(f"  {src} -> {out or '(error)'}")
            continue
        a = len(urllib.request.urlopen(src).read()) if src.startswith("http") else 0
        b = len(urllib.request.urlopen(out).read())
        print(f"  {src} ({a} B) -> {out} ({b} B)")
PY
echo
echo "imgproc is serving on $base (data in ./data). Open $base/ in a browser, or try:"
echo "  curl -F csv_file=@examples/products.csv $base/api/p/upload/"
echo "  curl $base/status/<request_id>/"
echo "  curl $base/metrics"
echo "Press Ctrl-C to stop."
wait "${pids[1]}"
