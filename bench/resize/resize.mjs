// sharp's side of bench/resize_bench.cc: every *.jpg of a folder, read into memory first, fitted
// inside a box (never enlarged), auto-rotated, metadata stripped (sharp's default), encoded as JPEG
// or WebP at a quality; one image at a time on one libvips thread. Prints one JSON line: the
// process's CPU time (user + system, and system alone: process.cpuUsage) per image over the measured rounds, after
// one round of warm-up, and the size of each output.
//
//   node resize.mjs DIR WIDTH HEIGHT jpeg|webp QUALITY ROUNDS
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";

const [dir, width, height, format, quality, rounds] = process.argv.slice(2);
sharp.concurrency(1); // libvips threads per image: imgproc runs one per image too
sharp.cache(false); // every image is new, as in imgproc (which turns libvips' cache off)

const inputs = readdirSync(dir)
  .filter((name) => name.endsWith(".jpg"))
  .sort()
  .map((name) => readFileSync(join(dir, name)));

function encode(input) {
  const image = sharp(input)
    .rotate()
    .resize({
      width: Number(width),
      height: Number(height),
      fit: "inside",
      withoutEnlargement: true,
    });
  return format === "webp"
    ? image.webp({ quality: Number(quality) }).toBuffer()
    : image.jpeg({ quality: Number(quality) }).toBuffer();
}

const sizes = [];
for (const input of inputs) sizes.push((await encode(input)).length); // warm-up
const before = process.cpuUsage();
for (let round = 0; round < Number(rounds); ++round) {
  for (const input of inputs) await encode(input);
}
const used = process.cpuUsage(before);
const images = inputs.length * Number(rounds);
console.log(
  JSON.stringify({
    sharp: sharp.versions.sharp,
    libvips: sharp.versions.vips,
    images,
    cpu_ms_per_image: (used.user + used.system) / 1000 / images,
    sys_ms_per_image: used.system / 1000 / images,
    bytes: sizes,
  }),
);
