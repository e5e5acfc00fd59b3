"""Helpers of the vm-tests suite: probes (commands + parsers), expectation loading, the NixOS driver backend."""
