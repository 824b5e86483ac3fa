package nodebundle

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/dhctl-dev/dhctl/internal/clusterstate"
	"github.com/dhctl-dev/dhctl/internal/kubeadm"
	"github.com/dhctl-dev/dhctl/internal/ssh"
)

// RanKubeadm reports whether dhctl ran kubeadm on the machine behind c (its kubeadm
// configuration is there): a machine that never was a node, or was cleaned, has no cluster to
// read.
func RanKubeadm(ctx context.Context, c *ssh.Client) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := c.Run(ctx, ssh.Command{Cmd: "test -e " + kubeadmConfigPath, Sudo: true, Quiet: true})
	var ce *ssh.CommandError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ce) && ce.ExitCode == 1:
		return false, nil
	default:
		return false, err
	}
}

// RestoreJoin reads, from the cluster's first master reached through c, the join data a state
// dir other than the bootstrap's lacks: the control-plane endpoint and the certificate key of
// the configuration kubeadm init ran with (the key kubeadm-certs is encrypted with, which a
// later upload-certs on that master uses again), and the hash of the cluster's CA. It holds no
// join token: the first join makes one (Nodes.EnsureJoinToken), so a plan-only run changes
// nothing in the cluster. sshHost is how c was reached, kept for later runs.
func RestoreJoin(ctx context.Context, c *ssh.Client, sshHost string) (clusterstate.Join, error) {
	cfg, err := readRemote(ctx, c, kubeadmConfigPath)
	if err != nil {
		return clusterstate.Join{}, fmt.Errorf("%w (is %s the cluster's first master?)", err, sshHost)
	}
	init, cluster, err := kubeadm.ParseInit(cfg)
	if err != nil {
		return clusterstate.Join{}, fmt.Errorf("host %s, %s: %w; give --ssh-host the first master (the control-plane endpoint)", sshHost, kubeadmConfigPath, err)
	}
	ip := init.LocalAPIEndpoint.AdvertiseAddress
	if net.ParseIP(ip) == nil || init.CertificateKey == "" {
		return clusterstate.Join{}, fmt.Errorf("host %s, %s: kubeadm init ran without an advertise address or a certificate key (was it made by dhctl?)", sshHost, kubeadmConfigPath)
	}
	if _, _, err := net.SplitHostPort(cluster.ControlPlaneEndpoint); err != nil {
		return clusterstate.Join{}, fmt.Errorf("host %s, %s: controlPlaneEndpoint %q is not host:port", sshHost, kubeadmConfigPath, cluster.ControlPlaneEndpoint)
	}
	ca, err := readRemote(ctx, c, "/etc/kubernetes/pki/ca.crt")
	if err != nil {
		return clusterstate.Join{}, err
	}
	hash, err := kubeadm.CACertHash(ca)
	if err != nil {
		return clusterstate.Join{}, fmt.Errorf("host %s: %w", sshHost, err)
	}
	return clusterstate.Join{
		MasterHost: sshHost,
		MasterIP:   ip,
		Join:       kubeadm.JoinInfo{APIServerEndpoint: cluster.ControlPlaneEndpoint, CACertHash: hash, CertificateKey: init.CertificateKey, CACert: string(ca)},
		Secrets:    kubeadm.Secrets{CertificateKey: init.CertificateKey},
	}, nil
}

// kubeadmConfigPath is where every node's bundle (candi's kubeadm step) writes the configuration
// kubeadm runs with; on the first master, kubeadm init's.
const kubeadmConfigPath = "/etc/kubernetes/dhctl/kubeadm.yaml"
