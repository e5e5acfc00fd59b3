# The whole lab as VMs on one test network: control plane and workers boot, the workers join,
# every node turns Ready, then DNS inside the cluster, the split-DNS answer and the
# nginx -> NodePort path are checked, a machine on the LAN that is not a node is refused what only
# nodes may reach, and the vm-tests suite runs with every expectation (scope cluster).  aarch64 hosts run here as x86_64 VMs (see adapter.nix).
# The steps live in homelab_vmtests/cluster.py.
{
  pkgs,
  names,
  nodeModules,
  expectations,
  suite,
  # the lab's own testinfra tests (its top-level vm-tests/), run beside the suite; null: none
  labTests ? null,
  # the lab's network (hosts/lab.nix `network`): the outsider takes the address the lan-client checks name
  network,
}:
let
  pyName = builtins.replaceStrings [ "-" ] [ "_" ];
  labTestsArg = if labTests == null then "None" else "\"${labTests}\"";
  # Stands in for Traefik behind the ingress NodePorts: busybox httpd answering a known text.
  echoText = "homelab-nodeport-ok";
  echoImage = pkgs.dockerTools.buildImage {
    name = "homelab-echo";
    tag = "latest";
    copyToRoot = pkgs.buildEnv {
      name = "homelab-echo-root";
      paths = [
        pkgs.busybox
        (pkgs.writeTextDir "www/index.html" "${echoText}\n")
      ];
    };
    config.Cmd = [
      "/bin/httpd"
      "-f"
      "-p"
      "8080"
      "-h"
      "/www"
    ];
  };
  machines = "{" + builtins.concatStringsSep ", " (map (n: ''"${n}": ${pyName n}'') names) + "}";
in
{
  name = "homelab-cluster";
  imports = [ ./force-accel.nix ];

  node.pkgsReadOnly = false;
  nodes =
    builtins.listToAttrs (
      map (n: {
        name = n;
        value = {
          imports = nodeModules n;
        };
      }) names
    )
    // {
      # A machine on the LAN that is no lab host: it must reach only what the flow table lets LAN clients in.
      outsider =
        { lib, ... }:
        {
          virtualisation.vlans = [ 1 ];
          networking.useDHCP = false;
          networking.firewall.enable = false;
          networking.primaryIPAddress = lib.mkForce network.lanClient;
          networking.interfaces.eth1.ipv4.addresses = lib.mkForce [
            {
              address = network.lanClient;
              prefixLength = network.prefixLength;
            }
          ];
        };
    };
  defaults.services.kubernetes.kubelet.seedDockerImages = [ echoImage ];

  extraPythonPackages = p: [
    p.pytest
    p.pytest-testinfra
  ];
  skipTypeCheck = true;

  testScript = ''
    import sys
    sys.path.insert(0, "${suite}")
    from homelab_vmtests import cluster

    start_all()
    cluster.run(${machines}, "${expectations}", subtest=subtest, echo_text="${echoText}", outsider=outsider, lab_tests=${labTestsArg})
  '';
}
