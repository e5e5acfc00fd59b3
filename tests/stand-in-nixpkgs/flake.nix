# A stand-in for nixpkgs, for homelab's tests only: real nix evaluates the lab's flake against it
# (`--override-input nixpkgs path:tests/stand-in-nixpkgs`) where nixpkgs cannot be fetched.
#
# It provides exactly what flake.nix asks of nixpkgs, and each answer is a tiny real derivation
# (so `nix flake check` applies its rules to the outputs) carrying a `standIn` record of what was
# asked: the NixOS modules a configuration or test node is made of (imports followed, files
# named), selected option definitions from each, test nodes, test scripts, Python packages.
# A name flake.nix uses that is missing here is an evaluation error: the list below is the set of
# nixpkgs names the flake relies on.
{
  description = "homelab test stand-in for nixpkgs (records what flake outputs ask of it)";

  outputs = { self }: import ./stand-in.nix;
}
