"""One test per kind of expectation; each is parametrized with that kind's checks of every targeted host."""

from __future__ import annotations

import pytest

from homelab_vmtests import probes


def fail(message: str) -> None:
    """A check that does not hold: say what and why, without a Python traceback."""
    pytest.fail(message, pytrace=False)


@pytest.mark.homelab_kind("service")
def test_service_active(host, check):
    unit = check["unit"]
    state = host.run(probes.service_command(unit)).stdout.strip() or "unknown (systemctl gave no answer)"
    if state != "active":
        status = host.run(probes.service_status_command(unit)).stdout.strip()
        fail(f"{unit} is {state}, expected active — {check['why']}" + (f"\n{status}" if status else ""))


@pytest.mark.homelab_kind("kernel_module")
def test_kernel_module_loaded(host, check):
    state = host.run(probes.module_command(check["module"])).stdout.strip()
    if state != "loaded":
        fail(f"kernel module {check['module']} is not loaded — {check['why']}")


@pytest.mark.homelab_kind("listening")
def test_port_listening(host, check):
    proto, port = check["proto"], check["port"]
    bound = probes.listening_addresses(host.run(probes.listening_command(proto)).stdout, proto)
    if port not in bound:
        fail(f"nothing listens on {proto.upper()} port {port} — {check['why']} (listening: {sorted(bound) or 'none'})")
    why = probes.bind_verdict(bound[port], check.get("bind", "any"))
    if why:
        fail(f"{proto.upper()} port {port}: {why} — {check['why']}")


@pytest.mark.homelab_kind("reach")
def test_reach_from_a_client(host, check, reach_client):
    """The firewall, seen from another machine: what the flow table lets in gets through, the rest is dropped."""
    client = reach_client(check["client"])
    proto, port = check["proto"], check["port"]
    word = client.run(probes.reach_command(proto, check["address"], port)).stdout.strip()
    verdict, seen = probes.reach_verdict(proto, word, check["expect"])
    where = f"{proto.upper()} {check['address']}:{port} from {check['client']}"
    if verdict == "unknown":
        pytest.skip(f"{where}: {seen}; a UDP listener that ignores the probe cannot be told from a drop")
    if verdict == "fail":
        fail(f"{where}: {seen}, expected the firewall to {check['expect']} it — {check['why']}")


@pytest.mark.homelab_kind("firewall_rule")
def test_firewall_rule(host, check):
    r = host.run(check["list"])
    if r.rc != 0:
        fail(f"`{check['list']}` failed (exit {r.rc}): is the {check['backend']} firewall loaded? — {check['why']}")
    if not probes.firewall_matches(r.stdout, check["rule"], check["match"]):
        fail(f"no rule `{check['rule']}` — {check['why']}\n`{check['list']}` printed:\n{r.stdout}")


@pytest.mark.homelab_kind("systemd_property")
def test_systemd_property(host, check):
    unit, prop, value = check["unit"], check["property"], check["value"]
    actual = host.run(probes.property_command(unit, prop)).stdout.strip()
    if not probes.property_matches(actual, value, check["match"]):
        verb = {"equals": "be", "contains": "contain", "last": "end its flags of that name with"}[check["match"]]
        fail(f"{unit} {prop} is {actual!r}; expected it to {verb} {value!r} — {check['why']}")


@pytest.mark.homelab_kind("dns")
def test_dns_answer(host, check, request):
    if check.get("client") == "tailnet" and request.config.getoption("homelab_no_tailnet"):
        pytest.skip(f"asked over the tailnet, and these targets are on none (--homelab-no-tailnet) — {check['why']}")
    reply = probes.parse_dns_output(host.run(probes.dns_command(check["server"], check["port"], check["name"])).stdout)
    where = f"{check['name']} asked of {check['server']}:{check['port']}"
    if "answer" in check:
        if reply.error:
            fail(f"{where}: {reply.describe()} — {check['why']}")
        if check["answer"] not in reply.answers:
            fail(f"{where}: got {reply.describe()}, expected A {check['answer']} — {check['why']}")
    elif check["not_answer"] in reply.answers:
        fail(f"{where}: got {reply.describe()}, must not be {check['not_answer']} — {check['why']}")


@pytest.mark.homelab_kind("hosts_entry")
def test_hosts_entry(host, check):
    name, address = check["name"], check["address"]
    found = probes.hosts_addresses(host.run(probes.hosts_command(name)).stdout)
    if not found:
        fail(f"/etc/hosts does not name {name} (only DNS might) — {check['why']}")
    if found[0] != address:
        fail(f"/etc/hosts answers {name} with {', '.join(found)}; expected {address} first — {check['why']}")


@pytest.mark.homelab_kind("image")
def test_container_image(host, check):
    r = host.run(probes.images_command(check["namespace"]))
    listed = probes.listed_images(r.stdout)
    if r.rc != 0:
        fail(f"listing containerd's images ({check['namespace']}) failed (exit {r.rc}): {r.stdout.strip()} — "
             f"{check['why']}")
    if check["reference"] not in listed:
        fail(f"containerd ({check['namespace']}) holds no {check['reference']} (it has: "
             f"{', '.join(sorted(listed)) or 'nothing'}) — {check['why']}")


@pytest.mark.homelab_kind("proxy")
def test_proxy_path(host, check):
    listen, nodeport = check["listen"], check["nodeport"]
    via_proxy = probes.parse_exchange(host.run(probes.exchange_command("127.0.0.1", listen)).stdout)
    if via_proxy.connected and via_proxy.reply:
        return
    direct = probes.parse_exchange(host.run(probes.exchange_command("127.0.0.1", nodeport)).stdout)
    hint = ("the NodePort itself answers, so nginx does not pass bytes through" if direct.reply
            else "the NodePort does not answer either: is its Service (Traefik) deployed?")
    fail(f"port {listen} -> {check['upstream']}: {via_proxy.describe()}; NodePort {nodeport} directly: "
                f"{direct.describe()} ({hint}) — {check['why']}")
