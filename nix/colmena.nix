# The lab as a colmena hive: `colmena apply --on @k8s-worker` deploys many hosts in parallel.
#
# colmena 0.4 (the one nixos-26.05 ships) reads this plain flake output named `colmena`; no
# colmena flake input is needed. colmena built from its main branch reads `colmenaHive` instead:
# add the colmena input and `colmenaHive = colmena.lib.makeHive self.outputs.colmena;`, or run it
# with `--legacy-flake-eval`.
#
# Each node is the same module list as the host's nixosConfigurations entry, plus where to
# deploy it (from hosts/lab.nix, which `homelab build` writes from host.py):
#   deployment.targetHost/targetUser/targetPort   Host(ssh=Ssh(...)), default root@<LAN address>:22
#   deployment.buildOnTarget                      Host(build_on=...): aarch64 hosts build on themselves
#   deployment.tags                               one per role: k8s-control-plane, k8s-worker, dns, ...
# A host whose system is not x86_64-linux gets its own package set (meta.nodeNixpkgs).
# (Host(build_on="<another host>") has no colmena equivalent: colmena builds locally or on the target.)
{
  nixpkgs,
  # hosts/lab.nix
  data,
  # host name -> the host's modules
  modulesOf,
}:
let
  inherit (builtins)
    attrNames
    elem
    filter
    head
    listToAttrs
    map
    ;
  names = attrNames data.hosts;
  defaultSystem = "x86_64-linux";
  pkgsFor = system: import nixpkgs { inherit system; };
  # colmena's own top-level names
  reserved = filter (
    n:
    elem n [
      "meta"
      "defaults"
      "network"
    ]
  ) names;
  node = name: {
    imports = modulesOf name;
    deployment = {
      inherit (data.hosts.${name}.deploy)
        targetHost
        targetUser
        targetPort
        buildOnTarget
        ;
      tags = data.hosts.${name}.tags;
    };
  };
in
if reserved != [ ] then
  throw "homelab: colmena reserves the name ${head reserved}; rename that host to deploy the lab with colmena"
else
  {
    meta = {
      name = data.cluster;
      description = "the ${data.cluster} lab (homelab)";
      nixpkgs = pkgsFor defaultSystem;
      nodeNixpkgs = listToAttrs (
        map (n: {
          name = n;
          value = pkgsFor data.hosts.${n}.system;
        }) (filter (n: data.hosts.${n}.system != defaultSystem) names)
      );
    };
  }
  // listToAttrs (
    map (n: {
      name = n;
      value = node n;
    }) names
  )
