# The whole lab as VMs on one test network: control plane and workers boot, the workers join,
# every node turns Ready, then DNS inside the cluster, the split-DNS answer and the
# nginx -> NodePort path are checked, and the vm-tests suite runs with every expectation
# (scope cluster).  aarch64 hosts run here as x86_64 VMs (see adapter.nix).
# The steps live in homelab_vmtests/cluster.py.
{
  pkgs,
  names,
  nodeModules,
  expectations,
  suite,
}:
let
  pyName = builtins.replaceStrings [ "-" ] [ "_" ];
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
  nodes = builtins.listToAttrs (
    map (n: {
      name = n;
      value = {
        imports = nodeModules n;
      };
    }) names
  );
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
    cluster.run(${machines}, "${expectations}", subtest=subtest, echo_text="${echoText}")
  '';
}
