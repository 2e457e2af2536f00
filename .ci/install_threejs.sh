#!/usr/bin/env bash
# Fetch three.js from the npm registry for tests/test_rig_threejs.py (the rigged GLB loaded by three.js's
# GLTFLoader in headless Chromium); called by .ci/run. Installs into ${MSMA_THREEJS_DIR:-$HOME/.cache/msma/threejs}.
# Idempotent; without npm (or offline) the test skips cleanly, so a failure here is reported but not fatal.
set -u
VERSION=0.187.0
DIR="${MSMA_THREEJS_DIR:-$HOME/.cache/msma/threejs}"
if [ -f "$DIR/node_modules/three/package.json" ] && grep -q "\"version\": \"$VERSION\"" "$DIR/node_modules/three/package.json"; then
    echo "install_threejs: three $VERSION already in $DIR"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "install_threejs: npm not found; the three.js test will be skipped" >&2
    exit 0
fi
mkdir -p "$DIR"
if ! npm install --prefix "$DIR" --no-audit --no-fund --silent "three@$VERSION" >/dev/null; then
    echo "install_threejs: npm install three@$VERSION failed; the three.js test will be skipped" >&2
    exit 0
fi
echo "install_threejs: three $VERSION in $DIR"
