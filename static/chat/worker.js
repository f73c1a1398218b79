// The crypto worker: Pyodide + veilpost, the keys, the state and the WebSocket.
//
// The page posts commands {id, cmd, args} and receives answers {id, ok, result | error} and
// events {event, ...} (docs/browser.md). Key material never leaves this worker: the page gets
// plaintext to display, nothing else.
//
// State: the client's SQLite file lives in Pyodide's in-memory file system; after every
// change it is saved to IndexedDB, encrypted with AES-GCM under a non-extractable WebCrypto
// key (kept in IndexedDB as a CryptoKey object: the browser can use it, nobody can read it).
// The SQLite store's own key is random and saved the same way (wrapped by that CryptoKey),
// never in the clear.
//
// Several tabs: one worker at a time owns the profile (a Web Lock, "veilpost-profile"). The
// others forward their commands to it and receive its events over a BroadcastChannel; when
// the owner's tab closes, the lock passes to another tab, whose worker takes over from the
// saved state.

const ORIGIN = self.location.origin;
const PYODIDE = `${ORIGIN}/static/pyodide/`;
const DB_PATH = "/profile/veilpost.sqlite3";
// A profile other than the chat's (`worker.js?profile=NAME`: the widget keeps one per agent)
// has its own database, lock and channel: one page cannot make another's identity talk.
const PROFILE = new URL(self.location.href).searchParams.get("profile") ?? "";
if (PROFILE && !/^[a-z0-9-]{1,80}$/.test(PROFILE)) throw new Error(`bad profile name ${JSON.stringify(PROFILE)}`);
const DATABASE = PROFILE ? `veilpost-${PROFILE}` : "veilpost";
const LOCK = PROFILE ? `veilpost-profile-${PROFILE}` : "veilpost-profile";
const channel = new BroadcastChannel(LOCK);
const me = crypto.randomUUID();

let role = "starting"; // "owner" | "follower"
let python = null; // the Python Worker (veilpost.browser.Worker) once ready
let pyodide = null;
let ready = null; // a promise resolved when this worker can answer commands
const waiting = new Map(); // follower: command id -> resolve

function post(message) {
  self.postMessage(message);
}

function progress(stage, detail = null) {
  post({ event: "progress", stage, detail });
}

// -- IndexedDB -------------------------------------------------------------------------------

function idb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DATABASE, 1);
    request.onupgradeneeded = () => request.result.createObjectStore("kv");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function idbGet(db, key) {
  return new Promise((resolve, reject) => {
    const request = db.transaction("kv").objectStore("kv").get(key);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function idbPut(db, key, value) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction("kv", "readwrite");
    tx.objectStore("kv").put(value, key);
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
  });
}

async function seal(key, bytes) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const ct = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, bytes));
  return { iv, ct };
}

async function open(key, sealed) {
  return new Uint8Array(await crypto.subtle.decrypt({ name: "AES-GCM", iv: sealed.iv }, key, sealed.ct));
}

class Persistence {
  async load() {
    this.db = await idb();
    this.key = await idbGet(this.db, "wrapping-key");
    if (!this.key) {
      this.key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"]);
      await idbPut(this.db, "wrapping-key", this.key);
    }
    const wrapped = await idbGet(this.db, "store-key");
    let storeKey;
    if (wrapped) {
      storeKey = await open(this.key, wrapped);
    } else {
      storeKey = crypto.getRandomValues(new Uint8Array(32));
      await idbPut(this.db, "store-key", await seal(this.key, storeKey));
    }
    const snapshot = await idbGet(this.db, "snapshot");
    return { storeKey, snapshot: snapshot ? await open(this.key, snapshot) : null };
  }

  // Save the SQLite file; calls made while a save runs are folded into one more save.
  save() {
    if (this.saving) {
      this.again = true;
      return this.saving;
    }
    this.saving = (async () => {
      try {
        do {
          this.again = false;
          python.checkpoint();
          const bytes = pyodide.FS.readFile(DB_PATH);
          await idbPut(this.db, "snapshot", await seal(this.key, bytes));
        } while (this.again);
      } finally {
        this.saving = null;
      }
    })();
    return this.saving;
  }
}

const persistence = new Persistence();

// -- the owner -------------------------------------------------------------------------------

// The runtime: Pyodide with the veilpost wheel installed and its modules imported. `./dev setup`
// makes a memory snapshot of exactly that state (client_wasm/make_snapshot.mjs: no profile, no
// key, nothing but imports ran in it) and names it in the manifest with the Pyodide version it
// was made for; loading it skips the interpreter's start-up and the imports. When there is
// none, it was made for another Pyodide, or it fails to load, the runtime starts the long way.
//
// The snapshot is served gzip-compressed (a quarter of its size); once decompressed it is kept
// in Cache Storage under its sha256, so later starts skip the download and the decompression.
// Older snapshots are deleted when a new one is kept.
const RUNTIME_CACHE = "veilpost-runtime";

async function snapshotBytes(manifest) {
  const name = `${ORIGIN}/static/wasm/${manifest.snapshot}?sha256=${manifest.snapshot_sha256}`;
  const cache = self.caches ? await caches.open(RUNTIME_CACHE).catch(() => null) : null;
  const kept = cache ? await cache.match(name) : null;
  if (kept) return { bytes: await kept.arrayBuffer(), keep: null };
  const response = await fetch(`${ORIGIN}/static/wasm/${manifest.snapshot}`, { cache: "no-cache" });
  if (!response.ok) throw new Error(`${manifest.snapshot}: HTTP ${response.status}`);
  // A server that sends it with `Content-Encoding: gzip` has had the browser decompress it
  // (and then the hash, of the compressed file, cannot be checked here).
  let compressed;
  if (response.headers.get("Content-Encoding") === "gzip") {
    compressed = null;
  } else {
    compressed = await response.arrayBuffer();
    await checkHash(compressed, manifest.snapshot_sha256, manifest.snapshot);
  }
  const body = compressed
    ? new Blob([compressed]).stream().pipeThrough(new DecompressionStream("gzip"))
    : response.body;
  const bytes = await new Response(body).arrayBuffer();
  const keep = cache && (async () => {
    for (const key of await cache.keys()) await cache.delete(key);
    await cache.put(name, new Response(bytes));
  });
  return { bytes, keep };
}

let keepSnapshot = null; // stores the snapshot just downloaded, once the chat is ready

// A file that is not the one the manifest names (a cache that kept an older one) is refused.
async function checkHash(bytes, expected, name) {
  if (!expected) return;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const hex = Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
  if (hex !== expected) throw new Error(`${name} is not the file the manifest names (sha256 ${hex})`);
}

async function runtime() {
  const manifestRequest = fetch(`${ORIGIN}/static/wasm/manifest.json`, { cache: "no-cache" }).then((r) => r.json());
  const { loadPyodide, version } = await import(`${PYODIDE}pyodide.mjs`);
  const options = { indexURL: PYODIDE, env: { VEILPOST_CRYPTO_BACKEND: "pure" } };
  const manifest = await manifestRequest;
  // A snapshot holds the interpreter's memory, not its files: the wheel is unpacked either way
  // (modules imported later are read from it).
  const wheelBytes = fetch(`${ORIGIN}/static/wasm/${manifest.wheel}`, { cache: "no-cache" })
    .then((r) => r.arrayBuffer())
    .then(async (bytes) => {
      await checkHash(bytes, manifest.sha256, manifest.wheel);
      return bytes;
    });
  if (manifest.snapshot && manifest.pyodide === version) {
    try {
      progress("packages", "from the prepared runtime");
      const { bytes, keep } = await snapshotBytes(manifest);
      const instance = await loadPyodide({ ...options, _loadSnapshot: new Uint8Array(bytes) });
      instance.unpackArchive(await wheelBytes, "wheel");
      keepSnapshot = keep;
      return instance;
    } catch (error) {
      console.warn("veilpost: the prepared runtime did not load; starting the long way", error);
      if (self.caches) await caches.delete(RUNTIME_CACHE).catch(() => {});
    }
  }
  const instance = await loadPyodide(options);
  progress("packages");
  instance.unpackArchive(await wheelBytes, "wheel");
  return instance;
}

async function boot() {
  const started = performance.now();
  progress("runtime");
  const saved = persistence.load(); // meanwhile
  pyodide = await runtime();
  progress("state");
  const { storeKey, snapshot } = await saved;
  pyodide.FS.mkdirTree("/profile");
  if (snapshot) pyodide.FS.writeFile(DB_PATH, snapshot);
  const browser = pyodide.pyimport("veilpost.browser");
  python = browser.Worker((text) => {
    const event = JSON.parse(text);
    post(event);
    channel.postMessage({ kind: "event", event });
    if (event.event === "message" || event.event === "conversation") persistence.save();
  });
  await python.start(ORIGIN, DB_PATH, pyodide.toPy(storeKey));
  await persistence.save();
  post({ event: "progress", stage: "ready", detail: null, ms: Math.round(performance.now() - started) });
  if (keepSnapshot) keepSnapshot().catch((error) => console.info("veilpost: runtime snapshot not kept", error));
}

async function answer(request) {
  const text = await python.handle(JSON.stringify(request));
  persistence.save();
  return JSON.parse(text);
}

channel.onmessage = async ({ data }) => {
  if (role === "owner" && data.kind === "command") {
    await ready;
    const reply = await answer(data.request);
    channel.postMessage({ kind: "reply", to: data.from, reply });
  } else if (role === "follower" && data.kind === "event") {
    post(data.event);
  } else if (role === "follower" && data.kind === "reply" && data.to === me) {
    const resolve = waiting.get(data.reply.id);
    if (resolve) {
      waiting.delete(data.reply.id);
      resolve(data.reply);
    }
  } else if (role === "owner" && data.kind === "hello") {
    channel.postMessage({ kind: "owner", to: data.from });
  } else if (role === "follower" && data.kind === "owner" && data.to === me) {
    post({ event: "progress", stage: "ready", detail: "shared with another tab" });
  }
};

function follow() {
  role = "follower";
  post({ event: "progress", stage: "shared", detail: "another tab owns this profile" });
  channel.postMessage({ kind: "hello", from: me });
  return Promise.resolve();
}

function forward(request) {
  return new Promise((resolve) => {
    waiting.set(request.id, resolve);
    channel.postMessage({ kind: "command", from: me, request });
  });
}

// Take the profile if no other tab has it; otherwise follow, and take over when it is free.
ready = new Promise((resolve, reject) => {
  navigator.locks.request(LOCK, { ifAvailable: true }, async (lock) => {
    if (!lock) {
      follow().then(resolve);
      // Queue for the lock: when the owning tab goes away, this worker takes over. Commands
      // sent meanwhile wait for its start; those the gone owner had not answered may or may
      // not have been carried out, so they are answered with an error, not run again.
      navigator.locks.request(LOCK, async () => {
        role = "owner";
        for (const [id, resolve] of waiting) {
          resolve({ id, ok: false, error: { code: "owner_gone", message: "The tab that ran this chat closed while this was under way: try again." } });
        }
        waiting.clear();
        ready = boot().catch((error) => {
          post({ event: "progress", stage: "error", detail: String(error?.message ?? error) });
          throw error;
        });
        await ready.catch(() => {});
        await new Promise(() => {}); // hold the lock for this worker's life
      });
      return;
    }
    role = "owner";
    try {
      await boot();
      resolve();
    } catch (error) {
      post({ event: "progress", stage: "error", detail: String(error?.message ?? error) });
      reject(error);
    }
    await new Promise(() => {}); // hold the lock for this worker's life
  });
});

self.onmessage = async ({ data: request }) => {
  try {
    await ready;
  } catch (error) {
    post({ id: request.id, ok: false, error: { code: "not_ready", message: String(error?.message ?? error) } });
    return;
  }
  const reply = role === "owner" ? await answer(request) : await forward(request);
  post(reply);
};
