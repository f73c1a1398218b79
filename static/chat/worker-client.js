// The page's side of the worker protocol (docs/browser.md): commands {id, cmd, args} answered
// by {id, ok, result | error}, and events {event, ...} pushed by the worker.

/** A command the worker refused; `code` is the client's error code (`unknown_recipient`, …). */
export class WorkerError extends Error {
  constructor(code, message) {
    super(message || code);
    this.name = "WorkerError";
    this.code = code;
  }
}

export class WorkerClient {
  _worker;
  _pending = new Map(); // command id -> {resolve, reject}
  _listeners = new Map(); // event name -> Set of functions
  _nextId = 1;
  _dead = null; // why the worker is gone, once it is

  /** `url` is the worker module; `WorkerClass` can be swapped for tests. */
  constructor(url, { WorkerClass = Worker } = {}) {
    this._worker = new WorkerClass(url, { type: "module", name: "veilpost" });
    this._worker.addEventListener("message", (event) => this._receive(event.data));
    // A module worker that fails to load or throws at the top level fires `error` with no
    // message; after that it answers nothing, so every waiting command is failed.
    this._worker.addEventListener("error", (event) => {
      event.preventDefault?.();
      this._crash(event.message || "the encryption worker could not be started");
    });
    this._worker.addEventListener("messageerror", () => this._crash("the worker sent a message that could not be read"));
  }

  /** Run `cmd`; resolves with its result, rejects with a WorkerError carrying `.code`. */
  call(cmd, args = {}) {
    if (this._dead) return Promise.reject(new WorkerError("worker_crashed", this._dead));
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      try {
        this._worker.postMessage({ id, cmd, args });
      } catch (error) {
        this._pending.delete(id);
        reject(new WorkerError("bad_request", String(error?.message ?? error)));
      }
    });
  }

  /** Call `fn(event)` for each worker event named `event` ("*" for all, "crash" when the worker
   * dies). Returns a function that unsubscribes. */
  on(event, fn) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(fn);
    return () => this._listeners.get(event)?.delete(fn);
  }

  terminate() {
    this._worker.terminate();
    this._crash("the worker was stopped");
  }

  _receive(data) {
    if (!data || typeof data !== "object") return;
    if (typeof data.event === "string") {
      this._emit(data.event, data);
      return;
    }
    const waiting = this._pending.get(data.id);
    if (!waiting) return;
    this._pending.delete(data.id);
    if (data.ok) waiting.resolve(data.result ?? {});
    else waiting.reject(new WorkerError(data.error?.code ?? "error", data.error?.message ?? ""));
  }

  _emit(name, data) {
    for (const key of [name, "*"]) {
      for (const fn of this._listeners.get(key) ?? []) {
        try {
          fn(data);
        } catch (error) {
          console.error(`the ${name} handler failed`, error);
        }
      }
    }
  }

  _crash(message) {
    if (this._dead) return;
    this._dead = message;
    for (const { reject } of this._pending.values()) reject(new WorkerError("worker_crashed", message));
    this._pending.clear();
    this._emit("crash", { event: "crash", message });
  }
}
