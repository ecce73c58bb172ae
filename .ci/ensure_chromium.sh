#!/usr/bin/env bash
# Make sure a headless Chromium and its chromedriver are installed (the tearsheet's browser
# test, tests/test_tearsheet_browser.py, drives them through Selenium). Idempotent: exits 0
# at once when both are already on PATH; otherwise installs the distribution's packages
# with apt-get (Debian: chromium + chromium-driver), which needs root and the package
# mirror, nothing else (no webdriver download).
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
browser_present() { have chromium || have chromium-browser || have google-chrome; }

if browser_present && have chromedriver; then
    echo "ensure_chromium: present ($(command -v chromium chromium-browser google-chrome 2>/dev/null | head -1), $(command -v chromedriver))"
    exit 0
fi
if ! have apt-get; then
    echo "ensure_chromium: Chromium or chromedriver missing and apt-get is not available; install them by hand" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    have sudo || { echo "ensure_chromium: need root (or sudo) to apt-get install chromium" >&2; exit 1; }
    sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq chromium chromium-driver
browser_present && have chromedriver || { echo "ensure_chromium: installed, yet chromium/chromedriver not on PATH" >&2; exit 1; }
echo "ensure_chromium: installed $(chromium --version 2>/dev/null || true)"
