"""The ingress host's generated ``services.nginx.streamConfig``, run by Debian's real nginx on loopback.

The proof is :func:`homelab.roles.ingress.proof.prove_stream` (``homelab test`` runs it too; its
docstring says how the config is run and what may differ from NixOS).  Here it runs on the seed
lab and on a variant with other ports, and it must fail when the config routes a port to the
wrong NodePort.
"""

from __future__ import annotations

import attrs
import pytest

from homelab import IngressProxy
from homelab.proofs import ProofFailed
from homelab.proofs.netns import plain, read_back, read_back_lab
from homelab.roles.ingress.proof import nginx_unavailable, prove_stream, remap
from tests import labkit


@pytest.fixture(scope="module")
def nginx_ok():
    why = nginx_unavailable()
    if why:
        pytest.skip(why)


def _ingress_variant():
    hosts = [attrs.evolve(h, roles=[IngressProxy(http_nodeport=30080, https_nodeport=32443, http_port=8080,
                                                 https_port=8443) if isinstance(r, IngressProxy) else r
                                    for r in h.roles])
             for h in labkit.seed_hosts()]
    return labkit.lab(hosts=hosts)


def _stream(rb):
    (host,) = rb.lab.with_role(IngressProxy)
    role = host.role(IngressProxy)
    assert plain(rb.options[host.hostname]["services.nginx.enable"]) is True
    routes = {role.http_port: role.http_nodeport, role.https_port: role.https_nodeport}
    return plain(rb.options[host.hostname]["services.nginx.streamConfig"]), routes


@pytest.mark.parametrize("which", ["seed", "other-ports"])
def test_nginx_streams_both_ports_to_the_right_nodeport(nix, nginx_ok, seed_root, which, tmp_path):
    rb = read_back(seed_root, nix) if which == "seed" else read_back_lab("nginx-other-ports", _ingress_variant(), nix)
    stream, routes = _stream(rb)
    assert prove_stream(stream, routes, tmp_path) == ("nginx -t passes; bytes make the round trip on " + ", ".join(
        f"{port} -> NodePort {nodeport}" for port, nodeport in routes.items()))


def test_swapped_nodeports_fail_the_proof(nix, nginx_ok, seed_root, tmp_path):
    stream, routes = _stream(read_back(seed_root, nix))
    (http, http_np), (https, https_np) = routes.items()
    with pytest.raises(ProofFailed, match=rf"listen {http} reached b'traefik NodePort {http_np}\\n'; the model "
                                          rf"routes it to NodePort {https_np}"):
        prove_stream(stream, {http: https_np, https: http_np}, tmp_path)


def test_remap_refuses_a_config_whose_ports_differ_from_the_model():
    text = "upstream a {\n  server 127.0.0.1:31080;\n}\nserver {\n  listen 80;\n  proxy_pass a;\n}\n"
    assert "listen 127.0.0.1:5000;" in remap(text, {80: 5000}, {31080: 5001})
    with pytest.raises(ProofFailed):
        remap(text, {80: 5000, 443: 5002}, {31080: 5001})
    with pytest.raises(ProofFailed):
        remap(text.replace("listen 80;", "listen 0.0.0.0:80;"), {80: 5000}, {31080: 5001})
