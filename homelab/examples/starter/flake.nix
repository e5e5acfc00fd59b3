# This lab as a flake. homelab.lib.mkLab reads hosts/ (what `homelab build` wrote there) and gives
# nixosConfigurations.<host>, nixosModules.<host>, colmena, packages (homelab, vm-<host>),
# checks (a VM test per host, the cluster test, generated files current), devShells, formatter.
{
  description = "A NixOS + Kubernetes home lab, described with homelab";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
  # the homelab flake (its library and command); point this at the one you use
  inputs.homelab.url = "github:homelab/homelab";
  inputs.homelab.inputs.nixpkgs.follows = "nixpkgs";
  # agenix decrypts each host's secrets (secrets/<name>.age, `homelab secrets`) at activation
  inputs.agenix = {
    url = "github:ryantm/agenix";
    flake = false;
  };
  inputs.homelab.inputs.agenix.follows = "agenix";

  outputs = { homelab, agenix, ... }: homelab.lib.mkLab { root = ./.; inherit agenix; };
}
