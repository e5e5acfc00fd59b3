"""The cluster test's steps, run by the NixOS test driver (vm-tests/cluster-test.nix).

Who is control plane, worker, ingress or DNS server comes from the expectations
JSON (``homelab expect --json``), so the steps follow the lab as written:

1. the control plane's API server answers;
2. every worker joins with the easyCerts token (``nixos-kubernetes-node-join``);
3. ``kubectl get nodes`` shows every Kubernetes host Ready;
4. a tiny HTTP workload is deployed behind the ingress NodePorts (standing in for Traefik);
5. DNS inside the cluster: every CoreDNS replica runs, and a pod resolves
   ``kubernetes.default.svc.cluster.local``;
6. split DNS: a pod and every node get the ingress host's LAN address for a name in the zone;
7. nginx -> NodePort: the ingress ports on the ingress host return the workload's page,
   from the host itself and over the LAN;
8. a machine on the LAN that is not a node (the ``outsider``) reaches what the flow table lets
   LAN clients reach and nothing else: kubelets, cfssl, VXLAN and the rest are refused;
9. the vm-tests suite with every expectation (scope cluster), the outsider playing the LAN client.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import time
from pathlib import Path
from typing import Any, Callable, Mapping

from homelab_vmtests import driver, probes

TOKEN = "/var/lib/cfssl/apitoken.secret"  # where easyCerts keeps the join token on the control plane
ECHO = "homelab-echo"


def _with(kind: str, data: dict) -> list[str]:
    return sorted(n for n, e in data.items() if kind in e.get("role_kinds", []))


def echo_manifest(nodeports: list[int]) -> dict:
    """A Deployment of the echo image and a NodePort Service on the lab's ingress NodePorts."""
    labels = {"app": ECHO}
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": ECHO, "labels": labels},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{
                            "name": ECHO, "image": f"{ECHO}:latest", "imagePullPolicy": "Never",
                            "ports": [{"containerPort": 8080}],
                        }]},
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": ECHO},
                "spec": {
                    "type": "NodePort",
                    "selector": labels,
                    "ports": [{"name": f"np-{p}", "port": 8000 + i, "targetPort": 8080, "nodePort": p}
                              for i, p in enumerate(sorted(set(nodeports)))],
                },
            },
        ],
    }


def _await_dns(machine: Any, name: str, c: dict, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        _, out = machine.execute("set +euo pipefail; " + probes.dns_command(c["server"], c["port"], c["name"]))
        reply = probes.parse_dns_output(out)
        if c["answer"] in reply.answers:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}: {c['name']} asked of {c['server']}:{c['port']}: {reply.describe()}, "
                                 f"expected {c['answer']}")
        time.sleep(2)


def run(machines: Mapping[str, Any], expectations: str, *, subtest: Callable[[str], Any] | None = None,
        echo_text: str = "homelab-nodeport-ok", suite: bool = True, outsider: Any = None,
        lab_tests: str | None = None) -> None:
    """The steps above; ``suite=False`` stops before the vm-tests suite (for testing the steps).

    ``outsider``: a machine on the LAN at the address the lan-client checks name, that is no lab host.
    ``lab_tests``: the lab's own tests (its ``vm-tests/``), run beside the suite.
    """
    data = json.loads(Path(expectations).read_text(encoding="utf-8"))
    step = subtest or (lambda _name: contextlib.nullcontext())
    cps = _with("ControlPlane", data)
    if len(cps) != 1:
        raise AssertionError(f"the cluster test needs one control plane, the lab has {cps}")
    cp = machines[cps[0]]
    workers = [n for n in _with("Worker", data) if n not in cps]
    k8s = cps + workers
    checks = {n: data[n]["checks"] for n in data}

    _join(step, machines, cp, workers, k8s)
    proxies = [(n, c) for n in data for c in checks[n] if c["kind"] == "proxy"]
    with step("a workload behind the ingress NodePorts"):
        manifest = json.dumps(echo_manifest([c["nodeport"] for _, c in proxies]))
        cp.succeed(f"echo {shlex.quote(manifest)} | kubectl apply -f -")
        cp.wait_until_succeeds(f"kubectl rollout status deployment/{ECHO} --timeout=20s", timeout=600)
    _dns(step, machines, cp, checks, cps[0], k8s)
    _ingress(step, machines, data, proxies, echo_text)
    if outsider is not None:
        _outsider(step, outsider, data, checks)
    if not suite:
        return
    with step("vm-tests suite, every expectation (scope cluster)"):
        driver.settle(machines, expectations, scope="cluster", timeout=300)
        driver.require_success(driver.run_suite(machines, expectations=expectations, scope="cluster",
                                                junitxml=driver.out_path("junit-cluster.xml"),
                                                clients={"lan-client": outsider} if outsider is not None else {},
                                                lab_tests=lab_tests, extra=["--homelab-no-tailnet"]))


def _join(step, machines: Mapping[str, Any], cp: Any, workers: list[str], k8s: list[str]) -> None:
    """The API server answers, the workers join with easyCerts' token, every node is Ready."""
    with step("control plane: the API server answers"):
        cp.wait_for_unit("kube-apiserver.service")
        cp.wait_until_succeeds("kubectl get --raw=/readyz", timeout=600)

    with step("workers join the cluster (easyCerts token)"):
        cp.wait_until_succeeds(f"test -s {TOKEN}", timeout=600)
        token = cp.succeed(f"cat {TOKEN}").strip()
        for n in workers:
            machines[n].wait_for_unit("multi-user.target")
            machines[n].wait_until_succeeds(f"echo {shlex.quote(token)} | nixos-kubernetes-node-join", timeout=600)

    with step("kubectl get nodes: every Kubernetes host is Ready"):
        for n in k8s:
            cp.wait_until_succeeds(f"kubectl get node {shlex.quote(n)} --no-headers | grep -w Ready", timeout=900)
        print(cp.succeed("kubectl get nodes -o wide"))


def _dns(step, machines: Mapping[str, Any], cp: Any, checks: dict, cp_name: str, k8s: list[str]) -> None:
    """DNS inside the cluster, then the lab's split DNS, from a pod and from every node."""
    cluster_dns = [c for c in checks[cp_name] if c["kind"] == "dns" and c["name"].endswith(".svc.cluster.local")]
    with step("DNS inside the cluster"):
        # every replica, not just one: each node must hold the image the Deployment names (pull policy Never)
        cp.wait_until_succeeds("kubectl -n kube-system rollout status deployment/coredns --timeout=20s",
                               timeout=600)
        for c in cluster_dns:
            cp.wait_until_succeeds(f"kubectl exec deploy/{ECHO} -- nslookup {c['name']} | grep -F '{c['answer']}'",
                                   timeout=300)

    # the test network has no tailnet (no Tailscale login in a VM): the tailnet's checks are left to `homelab verify`
    tailnet = [c for n in k8s for c in checks[n] if c["kind"] == "dns" and c.get("client") == "tailnet"]
    if tailnet:
        print(f"split DNS over the tailnet: {len(tailnet)} checks not run (the VMs are on no tailnet)")
    split = [c for n in k8s for c in checks[n]
             if c["kind"] == "dns" and "answer" in c and not c["name"].endswith(".svc.cluster.local")
             and c["server"] != "127.0.0.1" and c.get("client") != "tailnet"]
    with step("split DNS: names in the zone answer with the ingress host's LAN address"):
        for c in {(c["name"], c["server"], c["answer"]): c for c in split}.values():
            cp.wait_until_succeeds(
                f"kubectl exec deploy/{ECHO} -- nslookup {c['name']} {c['server']} | grep -F '{c['answer']}'",
                timeout=300)
        for n in k8s:
            for c in (c for c in checks[n] if c["kind"] == "dns" and c["scope"] == "cluster"
                      and c.get("client") != "tailnet"):
                _await_dns(machines[n], n, c, timeout=300)


def _ingress(step, machines: Mapping[str, Any], data: dict, proxies: list, echo_text: str) -> None:
    with step("nginx -> NodePort: the ingress ports return the workload's page"):
        for n, c in proxies:
            ingress = machines[n]
            ingress.wait_until_succeeds(
                f"curl -sf --max-time 5 http://127.0.0.1:{c['listen']}/ | grep -F {shlex.quote(echo_text)}",
                timeout=300)
            other = next((m for name, m in machines.items() if name != n), None)
            if other is not None:
                address = data[n]["address"]
                other.wait_until_succeeds(
                    f"curl -sf --max-time 5 http://{address}:{c['listen']}/ | grep -F {shlex.quote(echo_text)}",
                    timeout=300)


def _outsider(step, outsider: Any, data: dict, checks: dict) -> None:
    with step("a machine that is not a node: only what LAN clients may reach gets through"):
        outsider.wait_for_unit("multi-user.target")
        wrong = []
        for n in data:
            for c in checks[n]:
                if c["kind"] != "reach" or c["client"] != "lan-client":
                    continue
                word = outsider.succeed(probes.reach_command(c["proto"], c["address"], c["port"])).strip()
                verdict, seen = probes.reach_verdict(c["proto"], word, c["expect"])
                if verdict == "fail":
                    wrong.append(f"{n}: {c['proto']}/{c['port']}: {seen}, expected {c['expect']} ({c['why']})")
        if wrong:
            raise AssertionError("the outsider's probes:\n" + "\n".join(wrong))
