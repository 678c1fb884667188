#!/usr/bin/env bash
# Make headless Chromium available for the book's browser check (tests/book/test_htmlcheck.py,
# `make check-html`): Debian's chromium + chromium-driver, installed when missing and this
# machine can (root, or password-less sudo, with apt-get). Otherwise it says so and the browser
# tests skip, unless DUALPATH_REQUIRE_BROWSER=1 (CI) makes them fail.
set -uo pipefail
if command -v chromium > /dev/null && command -v chromedriver > /dev/null; then exit 0; fi
if ! command -v apt-get > /dev/null; then
  echo "note: no apt-get; install Chromium + ChromeDriver yourself for the browser tests" >&2; exit 0
fi
if [ "$(id -u)" = 0 ]; then sudo=(); elif sudo -n true 2> /dev/null; then sudo=(sudo -n); else
  echo "note: not root; run 'sudo apt-get install chromium chromium-driver' for the browser tests" >&2; exit 0
fi
echo "installing chromium + chromium-driver (Debian packages, about a minute)" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get install -y -q chromium chromium-driver > /tmp/dualpath-apt.log 2>&1 || {
  "${sudo[@]}" apt-get update -q > /dev/null 2>&1
  "${sudo[@]}" apt-get install -y -q chromium chromium-driver > /tmp/dualpath-apt.log 2>&1 ||
    echo "note: apt-get could not install chromium (see /tmp/dualpath-apt.log); browser tests will skip" >&2
}
exit 0
