// Package rig runs throwaway Linux machines for dhctl's end-to-end tests and `make demo`.
//
// A machine is a systemd-nspawn container booting a real systemd from a cached
// debootstrap Debian 12 root file system. Every machine of one rig lives in a
// network namespace the rig creates, on a bridge with static addresses, so
// nothing a test does can reach an address outside this host. Each machine has
// an overlay root over the shared cached rootfs, its own hostname and SSH host
// keys, an authorized key the rig generated, a host directory bound at
// /var/lib/containerd and its own cgroup subtree (so kubelets of different
// machines do not share kubepods.slice).
//
// Everything a rig creates is recorded under its state directory; Close removes
// it in reverse order, and Sweep removes what an earlier, killed run left.
package rig
