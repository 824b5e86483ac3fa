package kubeadm

import (
	"strings"
	"testing"
)

func TestParseInitReadsWhatInitWrote(t *testing.T) {
	out, err := Init(testCluster(), Node{Name: "master-0", IP: "10.0.0.11"}, Secrets{Token: testToken, CertificateKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	init, cluster, err := ParseInit(out)
	if err != nil {
		t.Fatal(err)
	}
	if init.CertificateKey != testKey || init.LocalAPIEndpoint.AdvertiseAddress != "10.0.0.11" || cluster.ControlPlaneEndpoint != "10.0.0.11:6443" {
		t.Errorf("got key %q, address %q, endpoint %q", init.CertificateKey, init.LocalAPIEndpoint.AdvertiseAddress, cluster.ControlPlaneEndpoint)
	}
}

func TestParseInitRefusesAJoinedNodes(t *testing.T) {
	j := JoinInfo{APIServerEndpoint: "10.0.0.11:6443", Token: testToken, CACertHash: "sha256:" + strings.Repeat("ab", 32), CertificateKey: testKey}
	out, err := Join(testCluster(), Node{IP: "10.0.0.13"}, j, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{string(out), "", "kind: [", "kind: InitConfiguration\n"} {
		if _, _, err := ParseInit([]byte(data)); err == nil {
			t.Errorf("ParseInit(%q) accepted it", data)
		} else {
			t.Log(err)
		}
	}
	if _, _, err := ParseInit(out); !strings.Contains(err.Error(), "JoinConfiguration") || !strings.Contains(err.Error(), "joined") {
		t.Errorf("error does not say the node joined: %v", err)
	}
}
