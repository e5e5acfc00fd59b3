# A stand-in for agenix's NixOS module (github:ryantm/agenix modules/age.nix), for homelab's tests only:
# real nix evaluates the lab's flake against it (`--override-input agenix path:tests/stand-in-agenix`)
# where agenix cannot be fetched. It declares nothing; the stand-in nixpkgs records that a host imports it
# (by this file's name) and the age.* definitions homelab's flake writes beside it.
{ ... }:
{
  options = { };
  config = { };
}
