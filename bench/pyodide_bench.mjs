// Runs bench/crypto.py's measure("pure") inside Pyodide under Node; prints one JSON line.
// Used by `python bench/crypto.py`; needs `./dev setup` (npm pyodide and the veilpost wheel).
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { wheel } = JSON.parse(readFileSync(join(root, "static/wasm/manifest.json"), "utf8"));
const pyodide = await loadPyodide({ env: { VEILPOST_CRYPTO_BACKEND: "pure" } });
pyodide.FS.writeFile("/tmp/veilpost.whl", readFileSync(join(root, "static/wasm", wheel)));
pyodide.FS.writeFile("/tmp/bench_crypto.py", readFileSync(join(root, "bench/crypto.py")));
const quick = process.argv.includes("--quick");
const result = await pyodide.runPythonAsync(`
import json, sys, sysconfig, zipfile
zipfile.ZipFile("/tmp/veilpost.whl").extractall(sysconfig.get_paths()["purelib"])
sys.path.insert(0, "/tmp")
import bench_crypto
json.dumps(bench_crypto.measure("pure", quick=${quick ? "True" : "False"}))
`);
console.log(result);
