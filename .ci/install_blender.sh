#!/usr/bin/env bash
# Install Debian's Blender for tests/test_rig_blender.py (the rigged GLB imported by a real consumer); called by
# .ci/run. Idempotent: does nothing when blender is already on PATH. Needs root (or passwordless sudo) for apt-get.
# Without it the Blender test skips cleanly, so a failure here is reported but not fatal.
set -u

have() { command -v "$1" >/dev/null 2>&1; }

if have blender && [ -d /usr/lib/python3/dist-packages/numpy ]; then
    echo "install_blender: already installed: $(blender --version 2>/dev/null | head -1)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != "0" ]; then
    if have sudo && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "install_blender: not root and no passwordless sudo; the Blender test will be skipped" >&2
        exit 0
    fi
fi
if ! have apt-get; then
    echo "install_blender: apt-get not found (not Debian/Ubuntu); install blender yourself" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq || { echo "install_blender: apt-get update failed" >&2; exit 0; }
# python3-numpy is only a recommendation of the package, but Blender's glTF importer imports numpy.
if ! $SUDO apt-get install -y -qq --no-install-recommends blender python3-numpy >/dev/null; then
    echo "install_blender: apt-get install blender failed; the Blender test will be skipped" >&2
    exit 0
fi
echo "install_blender: $(blender --version 2>/dev/null | head -1)"
