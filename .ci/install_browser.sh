#!/usr/bin/env bash
# Install headless Chromium + chromedriver from Debian for tests/test_app_browser.py (called by .ci/run).
# Idempotent: does nothing when both are already on PATH. Needs root (or passwordless sudo) for apt-get.
# Without them the browser test skips cleanly, so a failure here is reported but not fatal.
set -u

have() { command -v "$1" >/dev/null 2>&1; }

if (have chromium || have chromium-browser || have google-chrome) && have chromedriver; then
    echo "install_browser: already installed: $( (chromium --version || chromium-browser --version || google-chrome --version) 2>/dev/null | head -1), $(chromedriver --version | head -1)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if have sudo && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_browser: not root and no passwordless sudo; the browser test will be skipped" >&2
        exit 0
    fi
fi
if ! have apt-get; then
    echo "install_browser: apt-get not found (not Debian/Ubuntu); install chromium + chromedriver yourself" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "install_browser: apt-get update failed" >&2; exit 0; }
# Debian: chromium + chromium-driver; Ubuntu's chromium is a snap, so chromium-browser there may not work headless.
if ! $SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null; then
    echo "install_browser: apt-get install chromium chromium-driver failed; the browser test will be skipped" >&2
    exit 0
fi
echo "install_browser: $(chromium --version 2>/dev/null | head -1), $(chromedriver --version 2>/dev/null | head -1)"
