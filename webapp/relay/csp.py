"""The web chat's Content-Security-Policy, in a module of its own (no Django) so that test
harnesses serving the page without Django send the same one."""

# The web chat's Content-Security-Policy: scripts only from this origin (Pyodide compiles
# WebAssembly: 'wasm-unsafe-eval', and no 'unsafe-eval'), no inline script or style, no plugins,
# connections only back to this relay (its WebSocket included), images from this origin and
# blob: URLs (attachment previews), never framed by other sites.
CHAT_CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "worker-src 'self'",
        "connect-src 'self'",
        "img-src 'self' blob:",
        "style-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ]
)
