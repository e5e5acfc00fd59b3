# `import nixpkgs { system = ...; }`, as colmena's meta.nixpkgs asks: the stand-in package set of
# that system (see flake.nix), recording that it was imported this way.
{
  system ? "x86_64-linux",
  ...
}:
(import ./stand-in.nix).legacyPackages.${system} // { importedAs = "import nixpkgs { system = \"${system}\"; }"; }
