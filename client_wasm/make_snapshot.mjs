// Make the runtime snapshot the crypto worker starts from (run by `./dev setup`, after the wheel):
//
//     node client_wasm/make_snapshot.mjs static/wasm
//
// A snapshot is Pyodide's memory after the interpreter has started and `veilpost` is imported
// (no profile, no key: nothing but imports has run). Loading it skips Pyodide's start-up and
// the imports, which are most of a first visit's time to ready (docs/performance.md).
//
// Pyodide checks that a snapshot was made by the same build of Pyodide; the worker also
// checks the Pyodide version recorded here and the sha256 of the snapshot and of the wheel, and
// starts the long way when they differ or the snapshot fails to load. The snapshot is written gzip-compressed (a
// quarter of its size) and its name and sha256 are added to the directory's manifest.json.
//
// The snapshot uses Pyodide's private `_makeSnapshot` / `_loadSnapshot` options (a named
// shortcut: README "Known limits").

import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import zlib from "node:zlib";

// What the snapshot has imported; the worker imports nothing else before it is ready.
export const IMPORTS = [
  "veilpost.browser",
  "veilpost.bridge",
  "veilpost.client.client",
  "veilpost.crypto",
  "veilpost.crypto.pure",
];
// The environment the interpreter starts with is part of the snapshot.
export const ENV = { VEILPOST_CRYPTO_BACKEND: "pure" };

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const directory = path.resolve(process.argv[2] ?? path.join(root, "static", "wasm"));
const manifestPath = path.join(directory, "manifest.json");
const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
const pyodideDir = path.join(root, "node_modules", "pyodide") + path.sep;
const { loadPyodide, version } = await import(path.join(pyodideDir, "pyodide.mjs"));

const started = performance.now();
const pyodide = await loadPyodide({ indexURL: pyodideDir, env: ENV, _makeSnapshot: true });
pyodide.unpackArchive(new Uint8Array(fs.readFileSync(path.join(directory, manifest.wheel))), "wheel");
pyodide.runPython(`import ${IMPORTS.join(", ")}`);
const snapshot = zlib.gzipSync(pyodide.makeMemorySnapshot(), { level: 6 });
// Not ".gz": servers label that `Content-Encoding: gzip` and the browser decodes it more slowly
// than the worker does (measured).
const name = "runtime-snapshot.gzip";
fs.writeFileSync(path.join(directory, name), snapshot);
manifest.pyodide = version;
manifest.snapshot = name;
manifest.snapshot_sha256 = createHash("sha256").update(snapshot).digest("hex");
fs.writeFileSync(manifestPath, JSON.stringify(manifest) + "\n");
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`runtime snapshot: ${name}, ${(snapshot.length / 1e6).toFixed(1)} MB, Pyodide ${version}, ${seconds} s`);
