# See flake.nix.  Pure builtins: nothing here comes from nixpkgs.
let
  inherit (builtins)
    attrNames
    concatMap
    elem
    filter
    foldl'
    head
    isAttrs
    isFunction
    isList
    isPath
    isString
    length
    listToAttrs
    map
    mapAttrs
    sort
    tail
    ;

  # ---------------------------------------------------------------- derivations

  drv =
    system: name: record:
    derivation {
      inherit name system;
      builder = "/bin/sh";
      args = [
        "-c"
        "echo homelab-stand-in > $out"
      ];
    }
    // {
      standIn = record;
    };

  # ---------------------------------------------------------------- a module walker

  # What module functions get: lib helpers that tag what they wrap, packages that name themselves.
  lib = {
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkForce = lib.mkOverride 50;
    mkDefault = lib.mkOverride 1000;
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    optionalAttrs = cond: set: if cond then set else { };
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
  };
  pkgRef = name: {
    _type = "pkg";
    attrPath = name;
  };
  pkgCall = function: args: {
    _type = "pkg-call";
    inherit function args;
  };
  modulePkgs = listToAttrs (
    map (n: { name = n; value = pkgRef n; }) [
      "linuxPackages"
      "linuxPackages_latest"
      "linuxPackages_rpi4"
      "curl"
      "kubectl"
      "busybox"
      "coredns"
    ]
  ) // {
    writeShellScriptBin = name: text: pkgRef "writeShellScriptBin:${name}";
    buildEnv = pkgCall "buildEnv";
    dockerTools.pullImage = pkgCall "dockerTools.pullImage";
    dockerTools.buildImage = pkgCall "dockerTools.buildImage";
  };

  # Option paths whose definitions are recorded, per module.
  selected = [
    "nixpkgs.hostPlatform"
    "networking.hostName"
    "networking.primaryIPAddress"
    "boot.kernelPackages"
    "boot.loader.grub.enable"
    "boot.loader.systemd-boot.enable"
    "boot.loader.efi.canTouchEfiVariables"
    "boot.loader.generic-extlinux-compatible.enable"
    "virtualisation.memorySize"
    "virtualisation.cores"
    "virtualisation.diskSize"
    "virtualisation.graphics"
    "virtualisation.interfaces"
    "services.kubernetes.roles"
    "services.kubernetes.addons.dns.corednsImage"
    "services.kubernetes.kubelet.seedDockerImages"
    "services.openssh.enable"
    "boot.kernelModules"
    "age.secrets"
    "age.identityPaths"
    "services.tailscale.authKeyFile"
  ];
  split = s: filter isString (builtins.split "\\." s);

  # Options the stand-in declares, per namespace: a definition under one of these namespaces that is not
  # declared is refused as NixOS refuses it (lib/modules.nix: "The option `...' does not exist."), so
  # `homelab check --nixos` can be tested on a misspelled option.
  declared = {
    "services.jellyfin" = [ "enable" "openFirewall" "user" "group" "dataDir" "cacheDir" "package" ];
  };
  undeclaredIn =
    defs:
    concatMap (
      ns:
      let
        v = getPath (split ns) defs;
      in
      if isAttrs v && !(v ? _type) then
        map (n: { option = "${ns}.${n}"; value = v.${n}; }) (filter (n: !(elem n declared.${ns})) (attrNames v))
      else
        [ ]
    ) (attrNames declared);
  getPath =
    path: set:
    foldl' (acc: p: if acc != null && isAttrs acc && acc ? ${p} then acc.${p} else null) set path;

  fileOf = m: if isPath m || isString m then toString m else null;

  # Every module reachable from `modules` (depth first, each file once): its file (null when
  # inline), its selected definitions, and the modules of any virtualisation.vmVariant it sets.
  describe =
    config: modules:
    let
      args = {
        inherit lib config;
        pkgs = modulePkgs;
        options = { };
        modulesPath = "/stand-in/nixos/modules";
        name = "stand-in";
      };
      visit =
        acc: m:
        let
          file = fileOf m;
        in
        if file != null && elem file acc.files then
          acc
        else if file != null && builtins.substring 0 18 file == "/stand-in/nixos/mo" then
          acc // { records = acc.records ++ [ { inherit file; nixpkgs = true; } ]; }
        else
          let
            raw = if file != null then import m else m;
            v = if isFunction raw then raw args else raw;
            defs =
              if v ? config || v ? options then
                v.config or { }
              else
                removeAttrs v [
                  "imports"
                  "_file"
                  "key"
                  "disabledModules"
                  "meta"
                ];
            found = filter (p: getPath (split p) defs != null) selected;
            vmVariant = getPath [
              "virtualisation"
              "vmVariant"
            ] defs;
            record = {
              file = if file != null then file else if v ? _file then toString v._file else null;
              defs = listToAttrs (map (p: { name = p; value = getPath (split p) defs; }) found);
              undeclared = undeclaredIn defs;
            }
            // (if vmVariant == null then { } else { vmVariant = describe config [ vmVariant ]; });
            acc' = {
              files = acc.files ++ (if file != null then [ file ] else [ ]);
              records = acc.records ++ [ record ];
            };
          in
          foldl' visit acc' (v.imports or [ ]);
    in
    (foldl' visit {
      files = [ ];
      records = [ ];
    } modules).records;

  # The definitions of one option across module records, as [ { file; value; } ].
  defsOf = path: records: concatMap (r: if r ? defs && r.defs ? ${path} then [ { inherit (r) file; value = r.defs.${path}; } ] else [ ]) records;

  priorityOf = v: if isAttrs v && (v._type or "") == "override" then v.priority else 100;
  contentOf = v: if isAttrs v && (v._type or "") == "override" then contentOf v.content else v;
  # The winning value of a scalar option: the strongest priority, or an error text on a conflict.
  resolve =
    defs:
    if defs == [ ] then
      null
    else
      let
        best = foldl' (m: d: if priorityOf d.value < m then priorityOf d.value else m) 1000000 defs;
        winners = map (d: contentOf d.value) (filter (d: priorityOf d.value == best) defs);
      in
      if filter (w: w != head winners) winners == [ ] then head winners else "CONFLICT: ${toString (length winners)} values";

  # A config for module functions that read it: the roles, merged from the plain definitions.
  configFor =
    modules:
    let
      first = describe { services.kubernetes.roles = [ ]; } modules;
      roles = concatMap (d: let v = contentOf d.value; in if isList v then v else [ ]) (defsOf "services.kubernetes.roles" first);
    in
    {
      services.kubernetes.roles = roles;
    };
  describeWithConfig = modules: describe (configFor modules) modules;

  # ---------------------------------------------------------------- nixos

  nixosSystem =
    args@{ modules, ... }:
    let
      records = describeWithConfig modules;
      system = resolve (defsOf "nixpkgs.hostPlatform" records);
      hostName = resolve (defsOf "networking.hostName" records);
      vmRecords = concatMap (r: r.vmVariant or [ ]) records;
      vmSystem = resolve (defsOf "nixpkgs.hostPlatform" (records ++ vmRecords));
      record = {
        arguments = attrNames args;
        inherit system hostName;
        modules = records;
        vm = {
          system = vmSystem;
          modules = vmRecords;
        };
      };
    in
    {
      config = {
        nixpkgs.hostPlatform = system;
        networking.hostName = hostName;
        system.build.toplevel =
          let
            bad = concatMap (r: map (u: u // { inherit (r) file; }) (r.undeclared or [ ])) records;
            u = head bad;
          in
          if bad == [ ] then
            drv system "nixos-system-${hostName}" (record // { kind = "toplevel"; })
          else
            throw "The option `${u.option}' does not exist. Definition values:\n- In `${toString u.file}': ${builtins.toJSON u.value}";
        system.build.vm = drv vmSystem "nixos-vm-${hostName}" (record // { kind = "vm"; });
        system.build.sdImage = drv system "nixos-sd-image-${hostName}" (record // { kind = "sd-image"; });
      };
      standIn = record;
    };

  # ---------------------------------------------------------------- packages

  pythonPackageNames = [
    "attrs"
    "jinja2"
    "setuptools"
    "pytest"
    "pytest-testinfra"
    "pytest-xdist"
    "hypothesis"
    "import-linter"
    "pyyaml"
    "kubernetes-validate"
  ];

  pkgsFor =
    system:
    let
      leaf = name: drv system name { kind = "package"; inherit name; };
      py = listToAttrs (map (n: { name = n; value = leaf "python3-${n}" // { pname = n; }; }) pythonPackageNames);
      names = ps: map (p: p.pname) ps;
      testModuleArgs = {
        inherit lib;
        config = { };
        options.qemu.forceAccel = { };
      };
      runNixOSTest =
        test:
        let
          t = if isFunction test then test testModuleArgs else test;
          importedConfig = map (
            m:
            let
              v = (if isPath m then import m else m) testModuleArgs;
            in
            v.config or v
          ) (t.imports or [ ]);
          nodeRecords = mapAttrs (n: m: describeWithConfig [ m ]) t.nodes;
        in
        drv system "vm-test-run-${t.name}" {
          kind = "nixos-test";
          inherit (t) name testScript;
          nodes = nodeRecords;
          nodeSystems = mapAttrs (n: rs: resolve (defsOf "nixpkgs.hostPlatform" rs)) nodeRecords;
          defaults = describe { } [ (t.defaults or { }) ];
          pkgsReadOnly = t.node.pkgsReadOnly or null;
          extraPythonPackages = names ((t.extraPythonPackages or (p: [ ])) py);
          skipTypeCheck = t.skipTypeCheck or false;
          imported = importedConfig;
          forceAccel = foldl' (a: c: a || (c.qemu.forceAccel or false)) false importedConfig;
        };
    in
    {
      inherit system;
      nix = leaf "nix";
      kubectl = leaf "kubectl";
      kubernetes-helm = leaf "kubernetes-helm";
      age = leaf "age";
      openssh = leaf "openssh";
      nixfmt = leaf "nixfmt" // { meta.mainProgram = "nixfmt"; };
      colmena = leaf "colmena";
      curl = leaf "curl";
      busybox = leaf "busybox";
      python3Packages = py // {
        buildPythonApplication =
          a:
          drv system "${a.pname}-${a.version}" {
            kind = "python-application";
            inherit (a) pname version pyproject;
            src = a.src;
            build-system = names a.build-system;
            dependencies = names a.dependencies;
            makeWrapperArgs = a.makeWrapperArgs or [ ];
            pythonImportsCheck = a.pythonImportsCheck or [ ];
            meta = a.meta or { };
          };
      };
      python3 = {
        withPackages =
          f:
          drv system "python3-env" {
            kind = "python-env";
            packages = names (f py);
          };
      };
      mkShell =
        a:
        drv system "nix-shell" {
          kind = "shell";
          packages = map (p: { inherit (p) name; } // (if p ? standIn then { inherit (p) standIn; } else { })) (
            a.packages or [ ]
          );
          shellHook = a.shellHook or "";
        };
      runCommand =
        name: env: script:
        drv system name {
          kind = "run-command";
          inherit name script;
          inputs = map (p: p.name) (env.nativeBuildInputs or [ ]);
        };
      writeTextDir = path: text: drv system "text-dir" { kind = "text-dir"; inherit path text; };
      buildEnv = a: drv system a.name { kind = "env"; paths = map (p: p.name) a.paths; };
      dockerTools.buildImage =
        a:
        drv system "docker-image-${a.name}.tar.gz" {
          kind = "docker-image";
          inherit (a) name tag config;
        };
      testers.runNixOSTest = runNixOSTest;
    };
in
{
  lib = {
    inherit nixosSystem;
  };
  legacyPackages = {
    x86_64-linux = pkgsFor "x86_64-linux";
    aarch64-linux = pkgsFor "aarch64-linux";
  };
}
