# homelab's flake library: `lib.mkLab { root = ./.; }` turns a lab folder into flake outputs.
#
# A lab folder holds what you write (hosts/cluster.py, hosts/<name>/host.py, hand-written Nix) and
# what `homelab build` generates from it (hosts/<name>/default.nix, modules/, and hosts/lab.nix,
# the lab's hosts as data). mkLab reads hosts/lab.nix, so the flake follows the lab by itself: a
# host added or removed with `homelab build` is an output added or removed.
# (In a git checkout, `git add` the generated files: flakes only see tracked files.)
#
# The outputs, for a lab with hosts <h>:
#   nixosModules.<h>                   the host's generated entry module, hosts/<h>/default.nix
#   nixosConfigurations.<h>            nixpkgs.lib.nixosSystem of that module (its own system); its
#                                      virtualisation.vmVariant is the VM adapter (`build-vm`)
#   colmena                            the same modules as a colmena hive (see ./colmena.nix)
#   packages.<system>.default/homelab  the homelab command (nix, age and helm on its PATH)
#   packages.<system>.vm-<h>           a VM of the host for that system (what `homelab vm` boots)
#   packages.aarch64-linux.sd-image-<h>  for an aarch64 host (a Raspberry Pi): its system as an SD card image
#                                      (nixpkgs' installer/sd-card/sd-image-aarch64.nix; root on the NIXOS_SD
#                                      label, as homelab's RaspberryPi4 hosts have it). No secret is in it: the
#                                      host key goes onto the card after flashing (`homelab install --sd-card`)
#   packages.<system>.expectations     `homelab expect --json` for every host
#   checks.<system>.generated-files-current   `homelab build --check` on the lab's files
#   checks.x86_64-linux.host-<h>       one VM per host, running the vm-tests suite (scope host)
#   checks.x86_64-linux.cluster        every host as a VM on one network (join, DNS, ingress, suite)
#   devShells.<system>.default         homelab, Python with its test tools, nix, kubectl, helm, age, ssh,
#                                      colmena
#   formatter.<system>                 nixfmt
#
# Secrets: a host whose roles name a Secret("<name>") has `secrets = [ "<name>" ... ]` in hosts/lab.nix.
# Such a host also gets agenix's NixOS module (the `agenix` input's modules/age.nix) and
#   age.secrets.<name> = { file = <lab>/secrets/<name>.age; path = "/run/agenix/<name>"; };
#   age.identityPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];
# so the host decrypts them at activation with its SSH host key (the lab's hosts/<h>/ssh_host_ed25519_key.pub
# is its public half); only the encrypted file reaches the Nix store. `homelab secrets` writes them.
{ nixpkgs, agenix ? null }:
let
  inherit (builtins)
    attrNames
    filter
    head
    listToAttrs
    map
    match
    pathExists
    readFile
    stringLength
    substring
    ;

  defaultSystems = [
    "x86_64-linux"
    "aarch64-linux"
  ];
  # VM tests run on x86_64; aarch64 hosts are tested there as x86_64 VMs.
  testSystem = "x86_64-linux";
  byName = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
  prefixed = prefix: names: f: listToAttrs (map (n: { name = "${prefix}${n}"; value = f n; }) names);

  # ------------------------------------------------------------ homelab itself

  # The VM adapter, the NixOS tests and the testinfra suite ship with the Python package.
  harness = ../homelab/vm-tests;

  pyproject = builtins.fromTOML (readFile ../pyproject.toml);
  # "attrs>=23.1" -> "attrs": the nixpkgs Python package of each requirement
  requirement = spec: head (match "([A-Za-z0-9_.-]+).*" spec);
  runtimeDeps = map requirement pyproject.project.dependencies;
  testDeps = map requirement (pyproject.project.optional-dependencies.test or [ ]);
  # what `homelab test`'s cluster layer needs: kubernetes-validate and PyYAML (python3Packages.kubernetes-validate
  # is in nixpkgs: docs/nixpkgs-facts.md)
  clusterDeps = map requirement (pyproject.project.optional-dependencies.cluster or [ ]);

  # `rel` is path's place under dir, e.g. "homelab/cli.py" ("" for dir itself).
  relTo = dir: path: substring (stringLength (toString dir) + 1) (-1) (toString path);
  # The Python package only: pyproject.toml, README.md (its readme) and homelab/.
  cliSource = builtins.path {
    path = ../.;
    name = "homelab-source";
    filter =
      path: type:
      let
        rel = relTo ../. path;
      in
      baseNameOf rel != "__pycache__"
      && (
        rel == "pyproject.toml" || rel == "README.md" || rel == "homelab" || substring 0 8 rel == "homelab/"
      );
  };

  # The homelab command, built from this flake's source with the given package set.
  homelabFor =
    pkgs:
    pkgs.python3Packages.buildPythonApplication {
      pname = pyproject.project.name;
      inherit (pyproject.project) version;
      pyproject = true;
      src = cliSource;
      build-system = [ pkgs.python3Packages.setuptools ];
      dependencies = map (d: pkgs.python3Packages.${d}) (runtimeDeps ++ clusterDeps);
      # The programs homelab runs, after the user's own on PATH: nix (`homelab build` reads its output back),
      # age (`homelab secrets`, `install`) and helm (`homelab test` renders the cluster layer's releases).
      makeWrapperArgs = [
        "--suffix"
        "PATH"
        ":"
        "${pkgs.nix}/bin:${pkgs.age}/bin:${pkgs.kubernetes-helm}/bin"
      ];
      pythonImportsCheck = [ "homelab" ];
      meta = {
        description = pyproject.project.description;
        mainProgram = "homelab";
      };
    };

  # ------------------------------------------------------------ a lab

  mkLab =
    {
      # the lab's folder: holds hosts/ (usually the lab flake's ./.)
      root,
      # the package sets come from here (homelab's own input, which a lab makes follow its nixpkgs)
      nixpkgs ? defaultNixpkgs,
      # systems of packages, devShells and formatter (checks: also testSystem's VM tests)
      systems ? defaultSystems,
      # agenix's source (github:ryantm/agenix, a `flake = false` input): decrypts the hosts' secrets
      agenix ? defaultAgenix,
    }:
    let
      forSystems = f: byName systems f;
      pkgsFor = system: nixpkgs.legacyPackages.${system};

      labFile = root + "/hosts/lab.nix";
      # Per host: system, interface, address, kubernetes role, roles, tags, deploy (generated).
      data =
        if pathExists labFile then
          import labFile
        else
          throw "homelab: ${toString root}/hosts/lab.nix is missing: run `homelab build` in the lab (it writes the file the flake reads)";
      hostNames = attrNames data.hosts;
      entry =
        name:
        let
          file = root + "/hosts/${name}/default.nix";
        in
        if pathExists file then
          file
        else
          throw "homelab: hosts/${name}/default.nix is missing: run `homelab build` (in git, also `git add hosts modules`)";

      # A module that imports a file keeps the file's name for error messages and deduplication.
      hostModule = name: { imports = [ (entry name) ]; };

      # The secrets a host decrypts at activation (hosts/lab.nix), with agenix: see the top of this file.
      secretFile =
        name: host:
        let
          file = root + "/secrets/${name}.age";
        in
        if pathExists file then
          file
        else
          throw "homelab: hosts/${host} needs secret ${name}, and secrets/${name}.age is missing: `homelab secrets set ${name} --host ${host}` (in git, also `git add secrets`)";
      secretsModules =
        name:
        let
          secrets = data.hosts.${name}.secrets or [ ];
        in
        if secrets == [ ] then
          [ ]
        else if agenix == null then
          throw "homelab: hosts/${name} has secrets, and mkLab was given no agenix source (pass agenix = <the agenix input>)"
        else
          [
            (agenix + "/modules/age.nix")
            {
              _file = "homelab: the secrets of ${name} (nix/lib.nix)";
              age.identityPaths = [ "/etc/ssh/ssh_host_ed25519_key" ];
              age.secrets = byName secrets (s: {
                file = secretFile s name;
                path = "/run/agenix/${s}";
              });
            }
          ];
      # The modules a host is made of: the same for nixosConfigurations, the VM tests and colmena.
      modulesOf = name: [ (hostModule name) ] ++ secretsModules name;

      adapter =
        name: vmSystem: mode:
        let
          h = data.hosts.${name};
        in
        import (harness + "/adapter.nix") {
          inherit name vmSystem mode;
          inherit (h) system address;
          interfaces = [ h.interface ];
        };

      # The host's system as an SD card image (aarch64 boards: the Raspberry Pi); nixpkgs' own image module.
      sdImageModule =
        { modulesPath, ... }:
        {
          imports = [ (modulesPath + "/installer/sd-card/sd-image-aarch64.nix") ];
        };
      sdImage =
        name: (nixpkgs.lib.nixosSystem { modules = modulesOf name ++ [ sdImageModule ]; }).config.system.build.sdImage;
      aarch64Hosts = filter (n: data.hosts.${n}.system == "aarch64-linux") hostNames;

      # The host's configuration; `nixos-rebuild build-vm` (virtualisation.vmVariant) gets the VM
      # adapter for a VM of the given system.
      mkSystem =
        name: vmSystem:
        nixpkgs.lib.nixosSystem {
          modules = modulesOf name ++ [ { virtualisation.vmVariant = adapter name vmSystem "build-vm"; } ];
        };

      # The lab's own files: hosts/, modules/ (sources and generated) and secrets/ (encrypted), and the Python beside
      # hosts/ that host.py may import (a lab's own roles): top-level .py files, and the .py files of
      # top-level folders that hold Python (roles/, a package); never __pycache__ or tests/.
      isPy = name: match ".*\\.py" name != null;
      holdsPython =
        top: builtins.any isPy (attrNames (builtins.readDir (root + "/${top}")));
      labSource = builtins.path {
        path = root;
        name = "homelab-lab";
        filter =
          path: type:
          let
            rel = relTo root path;
            top = head (builtins.split "/" rel);
          in
          baseNameOf rel != "__pycache__"
          && (
            top == "hosts"
            || top == "modules"
            || top == "cluster"
            # the age files (ciphertext): a build checks each host can read the secrets it needs
            || top == "secrets"
            || (rel == top && type == "regular" && isPy rel)
            || (
              top != "tests"
              && (rel != top || type == "directory")
              && (type == "directory" || isPy rel)
              && holdsPython top
            )
          );
      };

      homelab = system: homelabFor (pkgsFor system);
      expectations =
        system:
        (pkgsFor system).runCommand "homelab-expectations.json" { nativeBuildInputs = [ (homelab system) ]; } ''
          homelab expect --root ${labSource} --json > $out
        '';
      # The generated files are what the sources generate (`homelab build --check`, offline).
      filesCurrent =
        system:
        (pkgsFor system).runCommand "homelab-generated-files-current" { nativeBuildInputs = [ (homelab system) ]; }
          ''
            cp -r ${labSource} lab
            chmod -R u+w lab
            homelab build --check --root lab
            touch $out
          '';

      # the lab's own testinfra tests (its top-level vm-tests/), beside the suite homelab ships
      labTests =
        if pathExists (root + "/vm-tests") then
          builtins.path {
            path = root + "/vm-tests";
            name = "lab-vm-tests";
            filter = path: type: baseNameOf path != "__pycache__";
          }
        else
          null;
      testPkgs = pkgsFor testSystem;
      # A test VM has a fresh host key, not the one the lab's secrets are encrypted to, so it gets no agenix:
      # the VM tests run without the secrets (a role's /run/agenix/<name> names a file the VM does not have,
      # as on a host whose secret failed to decrypt).
      nodeModules = name: [ (hostModule name) ] ++ [ (adapter name testSystem "test") ];
      testArgs = {
        inherit nodeModules;
        expectations = expectations testSystem;
        suite = harness;
        inherit labTests;
      };
    in
    {
      nixosModules = byName hostNames hostModule;

      nixosConfigurations = byName hostNames (n: mkSystem n data.hosts.${n}.system);

      colmena = import ./colmena.nix { inherit nixpkgs data modulesOf; };

      packages = forSystems (
        system:
        {
          default = homelab system;
          homelab = homelab system;
          # what the VM tests check, per host: `homelab expect --json` over the lab
          expectations = expectations system;
        }
        # a VM of each host for this machine: `nix build .#vm-<host>` (what `homelab vm` boots)
        // listToAttrs (
          map (n: {
            name = "vm-${n}";
            value = (mkSystem n system).config.system.build.vm;
          }) hostNames
        )
        # an SD card image of each aarch64 host: `nix build .#sd-image-<host>` (on aarch64, or with binfmt)
        // (if system == "aarch64-linux" then prefixed "sd-image-" aarch64Hosts sdImage else { })
      );

      checks = forSystems (
        system:
        { generated-files-current = filesCurrent system; }
        // (
          if system != testSystem then
            { }
          else
            prefixed "host-" hostNames (
              n: testPkgs.testers.runNixOSTest (import (harness + "/host-test.nix") (testArgs // { name = n; }))
            )
            // {
              cluster = testPkgs.testers.runNixOSTest (
                import (harness + "/cluster-test.nix") (
                  testArgs
                  // {
                    pkgs = testPkgs;
                    names = hostNames;
                    inherit (data) network;
                  }
                )
              );
            }
        )
      );

      devShells = forSystems (
        system:
        let
          pkgs = pkgsFor system;
        in
        {
          default = pkgs.mkShell {
            packages = [
              (homelab system)
              # a test requirement nixpkgs has no package for would be left out (the proofs that need it skip,
              # saying so); at the nixpkgs read (docs/nixpkgs-facts.md) it has them all
              (pkgs.python3.withPackages (
                ps: map (d: ps.${d}) (runtimeDeps ++ builtins.filter (d: ps ? ${d}) testDeps)
              ))
              pkgs.nix
              pkgs.kubectl
              pkgs.kubernetes-helm
              pkgs.age
              pkgs.openssh
              pkgs.nixfmt
              pkgs.colmena
            ];
            # in homelab's own repository, its source comes first
            shellHook = ''
              if [ -f homelab/__init__.py ]; then export PYTHONPATH="$PWD''${PYTHONPATH:+:$PYTHONPATH}"; fi
            '';
          };
        }
      );

      formatter = forSystems (system: (pkgsFor system).nixfmt);
    };

  defaultNixpkgs = nixpkgs;
  defaultAgenix = agenix;
in
{
  inherit mkLab homelabFor;
}
