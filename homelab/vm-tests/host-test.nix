# One lab host alone, as a VM: everything the model says holds on a lone host must hold
# (`python -m homelab expect hosts/<name> --scope host`), checked by the vm-tests suite through
# the test driver.  Light on purpose: one VM; only the cluster test boots several.
{
  name,
  nodeModules,
  expectations,
  suite,
  # the lab's own testinfra tests (its top-level vm-tests/), run beside the suite; null: none
  labTests ? null,
}:
let
  node = builtins.replaceStrings [ "-" ] [ "_" ] name;
  labTestsArg = if labTests == null then "None" else "\"${labTests}\"";
in
{
  name = "homelab-host-${name}";
  imports = [ ./force-accel.nix ];

  # The generated host sets nixpkgs.hostPlatform; the adapter maps it to the VM's system.
  node.pkgsReadOnly = false;
  nodes.${name} = {
    imports = nodeModules name;
  };

  extraPythonPackages = p: [
    p.pytest
    p.pytest-testinfra
  ];
  # The script imports the suite from the source at run time, which mypy cannot follow.
  skipTypeCheck = true;

  testScript = ''
    import sys
    sys.path.insert(0, "${suite}")
    from homelab_vmtests import driver as homelab

    start_all()
    ${node}.wait_for_unit("multi-user.target")
    homelab.settle({"${name}": ${node}}, "${expectations}", scope="host")
    homelab.require_success(
        homelab.run_suite(
            {"${name}": ${node}},
            expectations="${expectations}",
            scope="host",
            junitxml=homelab.out_path("junit-${name}.xml"),
            lab_tests=${labTestsArg},
        )
    )
  '';
}
