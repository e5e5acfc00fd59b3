# The VM adapter: a lab host's configuration, turned into a VM of that host.
#
# Hardware goes: no board kernel (the Raspberry Pi kernel gives way to the default one), no boot
# loader (QEMU boots the kernel directly), no disk labels (qemu-vm.nix mounts its own disk over
# fileSystems), VM memory and cores instead of the machine's.  Everything the lab is about stays:
# Kubernetes roles, the firewall and its flow-table rules, the Ceph kernel modules and containerd
# limit, CoreDNS, nginx, Tailscale, the raw options from host.py.
#
# Addresses stay the host's own: the VM gets a network card with the host's interface name
# (end0, enp1s0, ...) on the test network, so the generated LAN address, the API name in
# /etc/hosts and the apiserver's advertised address all work unchanged.
#
# An aarch64 host tested on x86_64 (vmSystem != system) becomes an x86_64 VM.  homelab's CoreDNS
# image (coredns:homelab) is built from pkgs.coredns on every node, so it follows the VM's
# architecture by itself; a lab whose nodes are all aarch64 may instead pin an arm64 image
# (ControlPlane(coredns_image=...)) or keep nixpkgs' default, neither of which runs in an x86_64
# VM.  Every such lab's VMs are all cross-architecture, so each of them gets the same
# coredns:homelab image below: one name:tag again, the one the control plane's Deployment names.
#
# Arguments (from flake.nix, read from the generated hosts/<name>/default.nix):
#   name        the host's name (the test node is called that too)
#   system      the host's own system, e.g. "aarch64-linux"
#   vmSystem    the system the VM runs as, e.g. "x86_64-linux"
#   interfaces  the host's LAN interface names
#   address     the host's LAN address
#   mode        "test" (a node of pkgs.testers.runNixOSTest) or "build-vm" (virtualisation.vmVariant)
{
  name,
  system,
  vmSystem,
  interfaces,
  address,
  mode ? "test",
}:
{
  config,
  lib,
  pkgs,
  ...
}:
let
  crossArch = system != vmSystem;
  isControlPlane = builtins.elem "master" config.services.kubernetes.roles;
  # QEMU's user-mode network card in build-vm; the rule below gives it the host's interface name.
  userNetMac = "52:54:00:12:34:56";
  renameRule = iface: ''SUBSYSTEM=="net", ACTION=="add", ATTR{address}=="${userNetMac}", NAME="${iface}"'';
in
{
  _file = ./adapter.nix;
  config = {
    # The platform: an aarch64 host is tested as an x86_64 VM on x86_64 machines.
    nixpkgs.hostPlatform = lib.mkForce vmSystem;

    # No hardware boot path: QEMU boots the kernel and initrd directly.
    boot.loader.grub.enable = lib.mkForce false;
    boot.loader.systemd-boot.enable = lib.mkForce false;
    boot.loader.efi.canTouchEfiVariables = lib.mkForce false;
    boot.loader.generic-extlinux-compatible.enable = lib.mkForce false;
    # No board kernel (linuxPackages_rpi4 and friends): the default kernel has ceph, rbd, br_netfilter.
    boot.kernelPackages = lib.mkForce pkgs.linuxPackages;

    # VM size: the control plane runs etcd + apiserver + the DNS addon.
    virtualisation.memorySize = if isControlPlane then 2048 else 1536;
    virtualisation.cores = 2;
    virtualisation.diskSize = 4096;
    virtualisation.graphics = false;

    # A cross-architecture VM seeds homelab's own CoreDNS image, built for the VM (the same
    # expression homelab writes in modules/k8s/base.nix; tests/test_flake.py keeps them equal).
    services.kubernetes.addons.dns.corednsImage = lib.mkIf crossArch (
      lib.mkForce (
        pkgs.dockerTools.buildImage {
          name = "coredns";
          tag = "homelab";
          copyToRoot = pkgs.buildEnv {
            name = "coredns-root";
            paths = [ pkgs.coredns ];
            pathsToLink = [ "/bin" ];
          };
          config = {
            Entrypoint = [ "/bin/coredns" ];
          };
        }
      )
    );

    # Test networks: a card named like the host's own, on VLAN 1 (test driver only).
    virtualisation.interfaces = lib.mkIf (mode == "test") (
      lib.genAttrs interfaces (_: {
        vlan = 1;
      })
    );
    # Other nodes find this one by name (/etc/hosts), at its LAN address.
    networking.primaryIPAddress = lib.mkIf (mode == "test") (lib.mkForce address);

    # build-vm: QEMU's user network plays the LAN (homelab vm passes net=<LAN>,host=<gateway> in
    # QEMU_NET_OPTS); its card takes the host's interface name.
    boot.initrd.services.udev.rules = lib.mkIf (mode == "build-vm" && interfaces != [ ]) (
      renameRule (builtins.head interfaces)
    );
    services.udev.extraRules = lib.mkIf (mode == "build-vm" && interfaces != [ ]) (
      renameRule (builtins.head interfaces)
    );

    # build-vm: SSH for the testinfra suite.  homelab vm puts a fresh public key into the shared
    # folder (SHARED_DIR, mounted at /tmp/shared); root may log in with that key only.
    services.openssh.enable = lib.mkIf (mode == "build-vm") true;
    systemd.services.homelab-vm-authorized-key = lib.mkIf (mode == "build-vm") {
      description = "Authorize the SSH key that homelab vm put into the shared folder";
      wantedBy = [ "multi-user.target" ];
      before = [ "sshd.service" ];
      unitConfig.RequiresMountsFor = "/tmp/shared";
      unitConfig.ConditionPathExists = "/tmp/shared/authorized_keys";
      serviceConfig.Type = "oneshot";
      script = "install -D -m 0600 /tmp/shared/authorized_keys /root/.ssh/authorized_keys";
    };

    # Tools the cluster test script uses on the nodes (the suite itself needs only bash + coreutils).
    environment.systemPackages = lib.mkIf (mode == "test") [
      pkgs.curl
      (pkgs.writeShellScriptBin "kubectl" ''
        exec ${pkgs.kubectl}/bin/kubectl --kubeconfig /etc/kubernetes/cluster-admin.kubeconfig "$@"
      '')
    ];
    services.kubernetes.pki.etcClusterAdminKubeconfig = lib.mkIf (mode == "test" && isControlPlane) (
      lib.mkDefault "kubernetes/cluster-admin.kubeconfig"
    );
  };
}
