# homelab's flake: the library (lib.mkLab, the homelab package, the template for a new lab) and
# this repository's own lab, which is lib.mkLab applied to ./hosts like any other lab's flake.
#
# A lab of your own: `nix flake init -t <this flake>` (or `homelab init DIR`) writes a lab whose
# flake.nix is `outputs = { homelab, ... }: homelab.lib.mkLab { root = ./.; };`.
# What mkLab gives a lab is listed in nix/lib.nix.
{
  description = "homelab: a typed NixOS + Kubernetes home lab, compiled to NixOS modules";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
  # agenix decrypts the hosts' secrets at activation (its NixOS module, modules/age.nix); its source only,
  # so it brings no inputs of its own (darwin, home-manager) into the lock
  inputs.agenix = {
    url = "github:ryantm/agenix";
    flake = false;
  };

  outputs =
    { nixpkgs, agenix, ... }:
    let
      lib = import ./nix/lib.nix { inherit nixpkgs agenix; };
    in
    # this repository's lab (hosts/): nixosConfigurations, checks, packages, colmena, ...
    lib.mkLab { root = ./.; }
    // {
      # lib.mkLab { root; nixpkgs ? ; systems ? } -> a lab's outputs; lib.homelabFor pkgs -> the command
      inherit lib;

      templates.default = {
        path = ./homelab/examples/starter;
        description = "a homelab lab: a control plane and a worker, its flake, README and CI script";
        welcomeText = ''
          # A new homelab lab

          - Point `inputs.homelab.url` in `flake.nix` at the homelab flake you used.
          - Replace each `hosts/*/hardware-configuration.nix` with the machine's own
            (`nixos-generate-config --show-hardware-config`), or let `homelab install` write it;
            until then `homelab build` refuses it.
          - Edit `hosts/cluster.py` and `hosts/*/host.py`, then `homelab build && homelab test`.
        '';
      };

      # pkgs.homelab, built with the package set it is applied to
      overlays.default = final: prev: { homelab = lib.homelabFor final; };
    };
}
