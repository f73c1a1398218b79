"""The web chat's Content-Security-Policy, in a module of its own (no Django) so that test
harnesses serving the page without Django send the same one."""

# The web chat's Content-Security-Policy: scripts only from this origin (Pyodide compiles
# WebAssembly: 'wasm-unsafe-eval', and no 'unsafe-eval'), no inline script or style, no plugins,
# connections only back to this relay (its WebSocket included), images from this origin and
# blob: URLs (attachment previews), never framed by other sites. The widget's page differs only
# in who may frame it.
_DIRECTIVES = [
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
    "object-src 'none'",
]
CHAT_CSP = "; ".join([*_DIRECTIVES, "frame-ancestors 'none'"])


def widget_csp(frame_ancestors: list[str]) -> str:
    """The policy of the agent widget's page (``/widget``): the chat's, except that the sites
    in ``frame_ancestors`` (CSP source expressions; ``*`` for any site) may embed it."""
    return "; ".join([*_DIRECTIVES, "frame-ancestors " + (" ".join(frame_ancestors) or "'none'")])
