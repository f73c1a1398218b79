// Runs measure("pure") of a bench/ script inside Pyodide under Node; prints one JSON line.
//   node bench/pyodide_bench.mjs [--module crypto|mls] [--quick]
// Used by `python bench/crypto.py` and `python bench/mls.py`; needs `./dev setup`
// (npm pyodide and the veilpost wheel).
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const { wheel } = JSON.parse(readFileSync(join(root, "static/wasm/manifest.json"), "utf8"));
const pyodide = await loadPyodide({ env: { VEILPOST_CRYPTO_BACKEND: "pure" } });
pyodide.FS.writeFile("/tmp/veilpost.whl", readFileSync(join(root, "static/wasm", wheel)));
const moduleFlag = process.argv.indexOf("--module");
const moduleName = moduleFlag >= 0 ? process.argv[moduleFlag + 1] : "crypto";
if (!/^[a-z_]+$/.test(moduleName)) throw new Error(`bad --module ${moduleName}`);
pyodide.FS.writeFile(`/tmp/bench_${moduleName}.py`, readFileSync(join(root, `bench/${moduleName}.py`)));
const quick = process.argv.includes("--quick");
const result = await pyodide.runPythonAsync(`
import json, sys, sysconfig, zipfile
zipfile.ZipFile("/tmp/veilpost.whl").extractall(sysconfig.get_paths()["purelib"])
sys.path.insert(0, "/tmp")
import bench_${moduleName} as bench
json.dumps(bench.measure("pure", quick=${quick ? "True" : "False"}))
`);
console.log(result);
