#!/bin/sh
# CI for this lab: the generated files match their sources, and homelab's tests pass on the lab.
# Needs homelab on PATH (the nixos-homelab package: pip install nixos-homelab, or run this inside
# `nix develop`) and nix.
# Exit codes: 0 passed; 1 stale files or a failing test; 2 a problem in the lab description.
set -eu
cd "$(dirname "$0")"
homelab build --check
homelab test
