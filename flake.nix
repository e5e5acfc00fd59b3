# The lab as a flake.  Hand-written; it follows hosts/ by itself: every hosts/<name>/default.nix
# that `python -m homelab build` wrote becomes nixosModules.<name>, nixosConfigurations.<name>,
# packages.<system>.vm-<name> and checks.x86_64-linux.host-<name>, and joins the cluster test.
# Every modules/**.nix becomes nixosModules.<folder>-<file> (e.g. k8s-master).
# (In a git checkout, `git add` a new host's files: flakes only see tracked files.)
{
  description = "homelab: a typed NixOS + Kubernetes home lab, compiled to NixOS modules";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

  outputs =
    { self, nixpkgs }:
    let
      inherit (builtins)
        attrNames
        concatMap
        filter
        head
        listToAttrs
        map
        match
        pathExists
        readDir
        ;

      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      # VM tests run on x86_64; aarch64 hosts are tested there as x86_64 VMs.
      testSystem = "x86_64-linux";
      forSystems = f: listToAttrs (map (s: { name = s; value = f s; }) systems);
      byName = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
      pkgsFor = system: nixpkgs.legacyPackages.${system};
      stem = file: head (match "(.*)\\.nix" file);
      isNix = file: match ".*\\.nix" file != null;

      # ------------------------------------------------------------ hosts and role modules

      hostDir = readDir ./hosts;
      hostNames = filter (
        n: hostDir.${n} == "directory" && pathExists (./hosts + "/${n}/default.nix")
      ) (attrNames hostDir);

      # What the flake must know before nixpkgs runs (the system, the LAN interface), read from the
      # generated entry module itself: called with stand-in arguments, its plain values are there.
      entry =
        name:
        let
          m = import (./hosts + "/${name}/default.nix");
          unusable = what: throw "hosts/${name}/default.nix: ${what} is not available while the flake reads it";
          args = {
            lib = unusable "lib";
            pkgs = unusable "pkgs";
            config = unusable "config";
            options = unusable "options";
            modulesPath = unusable "modulesPath";
          };
        in
        if builtins.isFunction m then m args else m;
      facts =
        name:
        let
          e = entry name;
          ifaces = e.networking.interfaces or { };
          # the LAN interface is the gateway's (raw options may mention other interfaces)
          iface = e.networking.defaultGateway.interface or (head (attrNames ifaces));
        in
        {
          inherit name;
          system =
            e.nixpkgs.hostPlatform
              or (throw "hosts/${name}/default.nix sets no nixpkgs.hostPlatform: run `python -m homelab build`");
          interfaces = if ifaces == { } then [ ] else [ iface ];
          address = if ifaces == { } then "" else (head ifaces.${iface}.ipv4.addresses).address;
        };

      moduleDir = readDir ./modules;
      roleModules = concatMap (
        entryName:
        if moduleDir.${entryName} == "directory" then
          let
            files = readDir (./modules + "/${entryName}");
          in
          map (f: {
            name = "${entryName}-${stem f}";
            value = ./modules + "/${entryName}/${f}";
          }) (filter (f: files.${f} == "regular" && isNix f) (attrNames files))
        else if isNix entryName then
          [
            {
              name = stem entryName;
              value = ./modules + "/${entryName}";
            }
          ]
        else
          [ ]
      ) (attrNames moduleDir);
      clashes = filter (r: builtins.elem r.name hostNames) roleModules;

      # A module that imports a file keeps the file's name for error messages and deduplication.
      importing = path: { imports = [ path ]; };

      adapter =
        name: vmSystem: mode:
        import ./vm-tests/adapter.nix ((facts name) // { inherit vmSystem mode; });

      # The host's configuration; `nixos-rebuild build-vm` (virtualisation.vmVariant) gets the
      # VM adapter for a VM of the given system.
      mkSystem =
        name: vmSystem:
        nixpkgs.lib.nixosSystem {
          modules = [
            self.nixosModules.${name}
            { virtualisation.vmVariant = adapter name vmSystem "build-vm"; }
          ];
        };

      # ------------------------------------------------------------ the homelab CLI

      pyproject = builtins.fromTOML (builtins.readFile ./pyproject.toml);
      # "attrs>=23.1" -> "attrs": the nixpkgs Python package of each requirement
      requirement = spec: head (match "([A-Za-z0-9_.-]+).*" spec);
      runtimeDeps = map requirement pyproject.project.dependencies;
      testDeps = map requirement (pyproject.project.optional-dependencies.test or [ ]);
      # The Python package only: pyproject.toml, README.md (its readme) and homelab/.
      cliSource = builtins.path {
        path = ./.;
        name = "homelab-source";
        filter =
          path: type:
          let
            rel = builtins.substring (builtins.stringLength (toString ./.) + 1) (-1) (toString path);
          in
          rel == "pyproject.toml"
          || rel == "README.md"
          || rel == "homelab"
          || (builtins.substring 0 8 rel == "homelab/" && baseNameOf rel != "__pycache__");
      };
      # The lab description only (hosts/), for `homelab expect` inside the checks.
      labSource = builtins.path {
        path = ./.;
        name = "homelab-lab";
        filter =
          path: type:
          let
            rel = builtins.substring (builtins.stringLength (toString ./.) + 1) (-1) (toString path);
          in
          (rel == "hosts" || builtins.substring 0 6 rel == "hosts/") && baseNameOf rel != "__pycache__";
      };
      homelabFor =
        pkgs:
        pkgs.python3Packages.buildPythonApplication {
          pname = pyproject.project.name;
          inherit (pyproject.project) version;
          pyproject = true;
          src = cliSource;
          build-system = [ pkgs.python3Packages.setuptools ];
          dependencies = map (d: pkgs.python3Packages.${d}) runtimeDeps;
          # `homelab build` reads its output back with nix; a nix on PATH comes first.
          makeWrapperArgs = [
            "--suffix"
            "PATH"
            ":"
            "${pkgs.nix}/bin"
          ];
          pythonImportsCheck = [ "homelab" ];
          meta = {
            description = pyproject.project.description;
            mainProgram = "homelab";
          };
        };
      expectationsFor =
        pkgs:
        pkgs.runCommand "homelab-expectations.json" { nativeBuildInputs = [ (homelabFor pkgs) ]; } ''
          homelab expect --root ${labSource} --json > $out
        '';

      # ------------------------------------------------------------ VM tests

      testPkgs = pkgsFor testSystem;
      nodeModules = name: [
        self.nixosModules.${name}
        (adapter name testSystem "test")
      ];
      testArgs = {
        inherit nodeModules;
        expectations = self.packages.${testSystem}.expectations;
        suite = ./vm-tests;
      };
    in
    if clashes != [ ] then
      throw "modules/ and hosts/ both define ${(head clashes).name}: rename the host or the module"
    else
      {
        # `imports = [ ./modules/k8s/master.nix ]` and friends, for other flakes.
        nixosModules =
          listToAttrs (
            map (r: {
              inherit (r) name;
              value = importing r.value;
            }) roleModules
          )
          // byName hostNames (n: importing (./hosts + "/${n}/default.nix"));

        nixosConfigurations = byName hostNames (n: mkSystem n (facts n).system);

        packages = forSystems (
          system:
          {
            default = homelabFor (pkgsFor system);
            homelab = homelabFor (pkgsFor system);
            # what the VM tests check, per host: `homelab expect --json` over hosts/
            expectations = expectationsFor (pkgsFor system);
          }
          # a VM of each host for this machine: `nix build .#vm-yomogi` (what `homelab vm` boots)
          // listToAttrs (
            map (n: {
              name = "vm-${n}";
              value = (mkSystem n system).config.system.build.vm;
            }) hostNames
          )
        );

        checks.${testSystem} =
          listToAttrs (
            map (n: {
              name = "host-${n}";
              value = testPkgs.testers.runNixOSTest (import ./vm-tests/host-test.nix (testArgs // { name = n; }));
            }) hostNames
          )
          // {
            cluster = testPkgs.testers.runNixOSTest (
              import ./vm-tests/cluster-test.nix (
                testArgs
                // {
                  pkgs = testPkgs;
                  names = hostNames;
                  network = (import ./hosts/lab.nix).network;
                }
              )
            );
          };

        devShells = forSystems (
          system:
          let
            pkgs = pkgsFor system;
          in
          {
            default = pkgs.mkShell {
              packages = [
                (pkgs.python3.withPackages (ps: map (d: ps.${d}) (runtimeDeps ++ testDeps)))
                pkgs.nix
                pkgs.kubectl
                pkgs.openssh
                pkgs.nixfmt
              ];
              shellHook = ''
                export PYTHONPATH="$PWD''${PYTHONPATH:+:$PYTHONPATH}"
              '';
            };
          }
        );

        formatter = forSystems (system: (pkgsFor system).nixfmt);
      };
}
