"""Browser tests: the web chat in Debian's Chromium, driven by Playwright, on a real relay."""
