// Run the veilpost library's tests inside real Pyodide (CPython on WebAssembly) under Node.
//
//   node tests/pyodide/run.mjs [pytest arguments...]
//
// With no arguments it runs the tests listed in tests/pyodide/tests.txt. It loads Pyodide from
// the npm package (node_modules/pyodide), installs the veilpost wheel that `./dev setup` built
// into static/wasm/ (the same file the browser loads) and the pure-Python test wheels from
// .cache/pyodide-wheels/, mounts the checkout and ../shared at their real paths, forces the
// pure crypto backend and runs pytest. The exit code is pytest's.
import { readFileSync, readdirSync, existsSync, realpathSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPyodide } from "pyodide";

// Real paths: a symlinked checkout or ../shared must be mounted where it really is.
const root = realpathSync(resolve(dirname(fileURLToPath(import.meta.url)), "../.."));
const sharedPath = resolve(process.env.VEILPOST_SHARED || join(root, "../shared"));
if (!existsSync(sharedPath)) fail(`test vectors not found at ${sharedPath}: put shared/ beside the checkout or set VEILPOST_SHARED`);
const shared = realpathSync(sharedPath);
const wheelDir = join(root, "static/wasm");
const testWheelDir = join(root, ".cache/pyodide-wheels");

function fail(message) {
  console.error(`error: ${message}`);
  process.exit(2);
}

if (!existsSync(join(wheelDir, "manifest.json"))) fail("no veilpost wheel in static/wasm/: run ./dev setup");
if (!existsSync(testWheelDir)) fail("no test wheels in .cache/pyodide-wheels/: run ./dev setup");
const { wheel } = JSON.parse(readFileSync(join(wheelDir, "manifest.json"), "utf8"));
if (!wheel || !existsSync(join(wheelDir, wheel))) fail(`wheel ${wheel} listed in static/wasm/manifest.json is missing: run ./dev setup`);
// An uncaught error would print a line of Pyodide's minified source; print just the message.
process.on("uncaughtException", (error) => fail(error?.message ?? String(error)));
process.on("unhandledRejection", (error) => fail(error?.message ?? String(error)));

let args = process.argv.slice(2);
if (args.length === 0) {
  args = readFileSync(join(root, "tests/pyodide/tests.txt"), "utf8")
    .split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
}

const started = Date.now();
const pyodide = await loadPyodide({
  env: { VEILPOST_CRYPTO_BACKEND: "pure", VEILPOST_SHARED: shared, HOME: "/home/pyodide" },
});
// Raw writes keep pytest's progress dots on one line.
pyodide.setStdout({ write: (buffer) => { process.stdout.write(buffer); return buffer.length; } });
pyodide.setStderr({ write: (buffer) => { process.stderr.write(buffer); return buffer.length; } });
for (const dir of [root, shared]) {
  pyodide.FS.mkdirTree(dir);
  pyodide.FS.mount(pyodide.FS.filesystems.NODEFS, { root: dir }, dir);
}
const wheels = [join(wheelDir, wheel), ...readdirSync(testWheelDir).filter((f) => f.endsWith(".whl")).map((f) => join(testWheelDir, f))];
pyodide.globals.set("wheel_paths", pyodide.toPy(wheels));
pyodide.globals.set("pytest_args", pyodide.toPy(args));
pyodide.globals.set("root", root);
const code = await pyodide.runPythonAsync(`
import os, sys, sysconfig, zipfile
site = sysconfig.get_paths()["purelib"]
for path in wheel_paths:
    with zipfile.ZipFile(path) as whl:
        whl.extractall(site)
os.chdir("/tmp")  # keep caches (.hypothesis) out of the checkout
import platform
import pytest
import veilpost
from veilpost.crypto import get_backend
print(f"Pyodide {platform.python_version()} on {sys.platform}; veilpost {veilpost.__version__} from {os.path.dirname(veilpost.__file__)}; backend {get_backend().name}")
pytest.main(["-c", os.path.join(root, "tests/pyodide/pytest.ini"), "--rootdir", root, "-p", "no:cacheprovider", *[a if a.startswith("-") or a.startswith("/") else os.path.join(root, a) for a in pytest_args]])
`);
console.log(`pyodide run took ${((Date.now() - started) / 1000).toFixed(1)} s`);
process.exit(Number(code));
