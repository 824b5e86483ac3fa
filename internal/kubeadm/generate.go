package kubeadm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"
)

// Defaults that are facts of the node layout rather than choices of the user.
const (
	CRISocket       = "unix:///run/containerd/containerd.sock"
	EtcdDataDir     = "/var/lib/etcd"
	APIServerPort   = 6443
	DefaultCluster  = "kubernetes"
	tokenTTL        = "24h0m0s"
	clusterDNSIndex = 10 // kubeadm's convention: the 10th address of the service range
)

// Cluster is the cluster-wide input, built from the cluster model (see FromConfig).
type Cluster struct {
	Name                 string // kubeadm clusterName; "" = "kubernetes"
	KubernetesVersion    string // full release, e.g. "1.33.13"
	ImageRepository      string // <imagesRepo>: images are flattened under it
	ControlPlaneEndpoint string // host:port every node reaches the API servers at
	PodSubnet            string
	// NodeCIDRMaskSize is the prefix length of each node's pod range (podSubnetNodeCIDRPrefix),
	// handed to kube-controller-manager; 0 = its default (/24 for IPv4).
	NodeCIDRMaskSize int
	ServiceSubnet    string
	ClusterDomain    string
	CertSANs         []string // beyond the node's own names and addresses and the endpoint
	CgroupDriver     string   // "systemd" or "cgroupfs"; "" = systemd
	// KubeletOverrides and KubeProxyOverrides are merged over the generated documents (from
	// KubeletConfiguration / KubeProxyConfiguration documents in the configuration).
	KubeletOverrides   map[string]any
	KubeProxyOverrides map[string]any
}

// Node is the machine a document is for.
type Node struct {
	Name string // node name; "" = the host name kubeadm finds
	IP   string // the address other nodes reach it at
	// Labels the kubelet registers the node with (those KubeletMaySetLabel allows).
	Labels map[string]string
	// Taints the node registers with; nil = kubeadm's default (the control-plane taint on
	// control-plane nodes, none on others).
	Taints *[]Taint
}

// Secrets of a bootstrap: the token nodes join with and the key control-plane certificates are
// uploaded under. Never log them.
type Secrets struct {
	Token          string // "abcdef.0123456789abcdef"
	CertificateKey string // 64 hex digits
}

// JoinInfo is what a node needs to join: the endpoint, the token and the CA's public key hash.
type JoinInfo struct {
	APIServerEndpoint string
	Token             string // secret
	CACertHash        string // "sha256:<hex>"
	CertificateKey    string // secret; control-plane joins only
	// CACert is the cluster CA (PEM), when known. With it, a node trusts the cluster from the
	// CA itself (file discovery) instead of from the token's signature on the cluster-info
	// ConfigMap: that signature is added by the controller manager's bootstrap signer, which
	// on a fresh control plane or for a new token comes seconds late, and kubeadm join retries
	// token discovery only every 5 s.
	CACert string `json:",omitempty"`
}

// DiscoveryKubeconfigPath is where a joining node keeps the kubeconfig of its file discovery:
// the API server's address and the cluster CA, no credentials.
const DiscoveryKubeconfigPath = "/etc/kubernetes/dhctl/discovery.conf"

// Init returns the documents of `kubeadm init` on the first control-plane node, in the order
// kubeadm reads them: InitConfiguration, ClusterConfiguration, KubeletConfiguration,
// KubeProxyConfiguration.
func Init(c Cluster, n Node, s Secrets) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if err := n.validate(); err != nil {
		return nil, err
	}
	if err := validateToken(s.Token); err != nil {
		return nil, err
	}
	if s.CertificateKey != "" && !isHex(s.CertificateKey, 64) {
		return nil, errors.New("kubeadm: certificate key must be 64 hex digits (32 bytes)")
	}
	init := InitConfiguration{
		TypeMeta: TypeMeta{APIVersion: KubeadmAPIVersion, Kind: "InitConfiguration"},
		BootstrapTokens: []BootstrapToken{{
			Token: s.Token, Description: "dhctl: nodes join with this token", TTL: tokenTTL,
			Usages: []string{"signing", "authentication"},
			Groups: []string{"system:bootstrappers:kubeadm:default-node-token"},
		}},
		NodeRegistration: c.nodeRegistration(n),
		LocalAPIEndpoint: APIEndpoint{AdvertiseAddress: n.IP, BindPort: APIServerPort},
		CertificateKey:   s.CertificateKey,
	}
	cluster := c.clusterConfiguration(n)
	kubelet, err := c.kubelet()
	if err != nil {
		return nil, err
	}
	proxy, err := c.kubeProxy()
	if err != nil {
		return nil, err
	}
	return marshalDocuments(init, cluster, kubelet, proxy)
}

// Join returns the JoinConfiguration of a node; controlPlane makes it another control-plane node
// (then j.CertificateKey must be set).
func Join(c Cluster, n Node, j JoinInfo, controlPlane bool) ([]byte, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if err := n.validate(); err != nil {
		return nil, err
	}
	if err := validateToken(j.Token); err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(j.APIServerEndpoint); err != nil {
		return nil, fmt.Errorf("kubeadm: API server endpoint %q is not host:port", j.APIServerEndpoint)
	}
	if !strings.HasPrefix(j.CACertHash, "sha256:") || !isHex(strings.TrimPrefix(j.CACertHash, "sha256:"), 64) {
		return nil, errors.New("kubeadm: the CA certificate hash must be sha256:<64 hex digits>; it comes from the first control-plane node's /etc/kubernetes/pki/ca.crt")
	}
	join := JoinConfiguration{
		TypeMeta:         TypeMeta{APIVersion: KubeadmAPIVersion, Kind: "JoinConfiguration"},
		NodeRegistration: c.nodeRegistration(n),
		Discovery: Discovery{BootstrapToken: &BootstrapTokenDiscovery{
			Token: j.Token, APIServerEndpoint: j.APIServerEndpoint, CACertHashes: []string{j.CACertHash},
		}},
	}
	if j.CACert != "" {
		if err := j.checkCACert(); err != nil {
			return nil, err
		}
		join.Discovery = Discovery{File: &FileDiscovery{KubeConfigPath: DiscoveryKubeconfigPath}, TLSBootstrapToken: j.Token}
	}
	if controlPlane {
		if !isHex(j.CertificateKey, 64) {
			return nil, errors.New("kubeadm: a control-plane join needs the certificate key of the first control-plane node (64 hex digits)")
		}
		join.ControlPlane = &JoinControlPlane{
			LocalAPIEndpoint: APIEndpoint{AdvertiseAddress: n.IP, BindPort: APIServerPort},
			CertificateKey:   j.CertificateKey,
		}
	}
	return marshalDocuments(join)
}

func (c Cluster) validate() error {
	if c.KubernetesVersion == "" {
		return errors.New("kubeadm: no Kubernetes version (the version map's patch of the chosen minor)")
	}
	if c.ImageRepository == "" {
		return errors.New("kubeadm: no image repository: set InitConfiguration deckhouse.imagesRepo")
	}
	if _, _, err := net.SplitHostPort(c.ControlPlaneEndpoint); err != nil {
		return fmt.Errorf("kubeadm: control-plane endpoint %q is not host:port", c.ControlPlaneEndpoint)
	}
	for field, v := range map[string]string{"podSubnetCIDR": c.PodSubnet, "serviceSubnetCIDR": c.ServiceSubnet} {
		if _, err := netip.ParsePrefix(v); err != nil {
			return fmt.Errorf("kubeadm: ClusterConfiguration %s %q is not a CIDR like 10.111.0.0/16", field, v)
		}
	}
	if c.ClusterDomain == "" {
		return errors.New("kubeadm: ClusterConfiguration clusterDomain is empty")
	}
	if c.NodeCIDRMaskSize != 0 {
		pod, _ := netip.ParsePrefix(c.PodSubnet)
		if c.NodeCIDRMaskSize <= pod.Bits() || c.NodeCIDRMaskSize > pod.Addr().BitLen() {
			return fmt.Errorf("kubeadm: ClusterConfiguration podSubnetNodeCIDRPrefix /%d does not fit into podSubnetCIDR %s", c.NodeCIDRMaskSize, c.PodSubnet)
		}
	}
	switch c.CgroupDriver {
	case "", "systemd", "cgroupfs":
	default:
		return fmt.Errorf("kubeadm: cgroup driver %q is neither systemd nor cgroupfs", c.CgroupDriver)
	}
	return nil
}

func (n Node) validate() error {
	a, err := netip.ParseAddr(n.IP)
	if err != nil {
		return fmt.Errorf("kubeadm: node address %q is not an IP address", n.IP)
	}
	if a.IsLoopback() || a.IsUnspecified() {
		return fmt.Errorf("kubeadm: node address %s cannot be a loopback or unspecified address: give the address other nodes reach it at", n.IP)
	}
	return nil
}

func (c Cluster) nodeRegistration(n Node) NodeRegistration {
	args := []Arg{{Name: "node-ip", Value: n.IP}}
	var labels []string
	for k, v := range n.Labels {
		labels = append(labels, k+"="+v)
	}
	if len(labels) > 0 {
		sort.Strings(labels)
		args = append(args, Arg{Name: "node-labels", Value: strings.Join(labels, ",")})
	}
	return NodeRegistration{
		Name:             n.Name,
		CRISocket:        CRISocket,
		KubeletExtraArgs: args,
		Taints:           n.Taints,
		ImagePullPolicy:  "IfNotPresent",
	}
}

// KubeletMaySetLabel says whether a kubelet may register its node with the label: the kubelet
// refuses labels of the kubernetes.io and k8s.io namespaces but a few (NodeRestriction's rule);
// those (node-role.kubernetes.io/..., say) are set through the API once the node exists.
func KubeletMaySetLabel(key string) bool {
	ns, _, found := strings.Cut(key, "/")
	if !found {
		return true
	}
	restricted := func(d string) bool { return ns == d || strings.HasSuffix(ns, "."+d) }
	if !restricted("kubernetes.io") && !restricted("k8s.io") {
		return true
	}
	if restricted("kubelet.kubernetes.io") || restricted("node.kubernetes.io") {
		return true
	}
	switch key {
	case "kubernetes.io/hostname", "kubernetes.io/instance-type", "kubernetes.io/os", "kubernetes.io/arch",
		"beta.kubernetes.io/instance-type", "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
		"failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
		"topology.kubernetes.io/zone", "topology.kubernetes.io/region":
		return true
	}
	return false
}

func (c Cluster) clusterConfiguration(n Node) ClusterConfiguration {
	name := c.Name
	if name == "" {
		name = DefaultCluster
	}
	host, _, _ := net.SplitHostPort(c.ControlPlaneEndpoint)
	sans := uniq(append([]string{n.IP, host, "127.0.0.1", "localhost"}, append(nonEmpty(n.Name), c.CertSANs...)...))
	return ClusterConfiguration{
		TypeMeta:             TypeMeta{APIVersion: KubeadmAPIVersion, Kind: "ClusterConfiguration"},
		ClusterName:          name,
		KubernetesVersion:    "v" + strings.TrimPrefix(c.KubernetesVersion, "v"),
		ControlPlaneEndpoint: c.ControlPlaneEndpoint,
		ImageRepository:      strings.TrimSuffix(c.ImageRepository, "/"),
		CertificatesDir:      "/etc/kubernetes/pki",
		Networking:           Networking{DNSDomain: c.ClusterDomain, PodSubnet: c.PodSubnet, ServiceSubnet: c.ServiceSubnet},
		Etcd:                 Etcd{Local: &LocalEtcd{DataDir: EtcdDataDir}},
		APIServer:            APIServer{CertSANs: sans},
		ControllerManager:    c.controllerManager(),
		// dhctl installs CoreDNS itself (templates/dns) with a readiness probe that does not
		// hold a bootstrap for 10 s.
		DNS: DNS{Disabled: true},
	}
}

// controllerManager carries the per-node pod range size: kube-controller-manager allocates each
// node's spec.podCIDR with this mask (its flag --node-cidr-mask-size).
func (c Cluster) controllerManager() ControlPlaneComponent {
	if c.NodeCIDRMaskSize == 0 {
		return ControlPlaneComponent{}
	}
	return ControlPlaneComponent{ExtraArgs: []Arg{{Name: "node-cidr-mask-size", Value: strconv.Itoa(c.NodeCIDRMaskSize)}}}
}

func (c Cluster) kubelet() (any, error) {
	dns, err := ClusterDNS(c.ServiceSubnet)
	if err != nil {
		return nil, err
	}
	driver := c.CgroupDriver
	if driver == "" {
		driver = "systemd"
	}
	k := KubeletConfiguration{
		TypeMeta:                 TypeMeta{APIVersion: KubeletAPIVersion, Kind: "KubeletConfiguration"},
		CgroupDriver:             driver,
		ClusterDomain:            c.ClusterDomain,
		ClusterDNS:               []string{dns},
		ContainerRuntimeEndpoint: CRISocket,
		RotateCertificates:       true,
	}
	return merge(k, c.KubeletOverrides)
}

func (c Cluster) kubeProxy() (any, error) {
	p := KubeProxyConfiguration{
		TypeMeta:    TypeMeta{APIVersion: KubeProxyAPIVersion, Kind: "KubeProxyConfiguration"},
		Mode:        "iptables",
		ClusterCIDR: c.PodSubnet,
	}
	return merge(p, c.KubeProxyOverrides)
}

// ClusterDNS is the cluster DNS Service's address: the 10th of the service range.
func ClusterDNS(serviceSubnet string) (string, error) {
	p, err := netip.ParsePrefix(serviceSubnet)
	if err != nil {
		return "", fmt.Errorf("kubeadm: service subnet %q is not a CIDR", serviceSubnet)
	}
	base := new(big.Int).SetBytes(p.Masked().Addr().AsSlice())
	ip := new(big.Int).Add(base, big.NewInt(clusterDNSIndex)).Bytes()
	raw := make([]byte, p.Addr().BitLen()/8)
	copy(raw[len(raw)-len(ip):], ip)
	a, _ := netip.AddrFromSlice(raw)
	if !p.Contains(a) {
		return "", fmt.Errorf("kubeadm: service subnet %s is too small for the cluster DNS address", serviceSubnet)
	}
	return a.String(), nil
}

// merge overlays a user document over a generated one, field by field (maps recursively).
func merge(doc any, override map[string]any) (any, error) {
	if len(override) == 0 {
		return doc, nil
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var base map[string]any
	if err := json.Unmarshal(raw, &base); err != nil {
		return nil, err
	}
	for k, v := range override {
		if k == "apiVersion" || k == "kind" || k == "metadata" {
			continue
		}
		base[k] = deepMerge(base[k], v)
	}
	return base, nil
}

func deepMerge(dst, src any) any {
	d, ok1 := dst.(map[string]any)
	s, ok2 := src.(map[string]any)
	if !ok1 || !ok2 {
		return src
	}
	out := map[string]any{}
	for k, v := range d {
		out[k] = v
	}
	for k, v := range s {
		out[k] = deepMerge(out[k], v)
	}
	return out
}

func marshalDocuments(docs ...any) ([]byte, error) {
	var b bytes.Buffer
	for i, d := range docs {
		y, err := yaml.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("kubeadm: encoding document %d: %w", i+1, err)
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(y)
	}
	return b.Bytes(), nil
}

// NewSecrets makes a fresh bootstrap token and certificate key.
func NewSecrets() (Secrets, error) {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	pick := func(n int) (string, error) {
		out := make([]byte, n)
		for i := range out {
			v, err := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
			if err != nil {
				return "", err
			}
			out[i] = alphabet[v.Int64()]
		}
		return string(out), nil
	}
	id, err := pick(6)
	if err != nil {
		return Secrets{}, err
	}
	secret, err := pick(16)
	if err != nil {
		return Secrets{}, err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return Secrets{}, err
	}
	return Secrets{Token: id + "." + secret, CertificateKey: hex.EncodeToString(key)}, nil
}

// DiscoveryKubeconfig is the kubeconfig a node's file discovery reads (at
// DiscoveryKubeconfigPath): the cluster's endpoint and CA, no credentials (the kubelet's TLS
// bootstrap uses the token of the JoinConfiguration). Nil when j has no CA certificate.
func DiscoveryKubeconfig(j JoinInfo) ([]byte, error) {
	if j.CACert == "" {
		return nil, nil
	}
	if err := j.checkCACert(); err != nil {
		return nil, err
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["kubernetes"] = &clientcmdapi.Cluster{Server: "https://" + j.APIServerEndpoint, CertificateAuthorityData: []byte(j.CACert)}
	// A user without credentials: kubeadm refuses a context without one, and reads the public
	// cluster-info as anonymous.
	kc.AuthInfos["anonymous"] = &clientcmdapi.AuthInfo{}
	kc.Contexts["discovery"] = &clientcmdapi.Context{Cluster: "kubernetes", AuthInfo: "anonymous"}
	kc.CurrentContext = "discovery"
	return clientcmd.Write(*kc)
}

// checkCACert makes sure the CA certificate is the one the hash names: both come from the
// first control-plane node, and a mismatch means the join data mixes two clusters.
func (j JoinInfo) checkCACert() error {
	hash, err := CACertHash([]byte(j.CACert))
	if err != nil {
		return err
	}
	if hash != j.CACertHash {
		return fmt.Errorf("kubeadm: the join data's CA certificate hashes to %s, not to its CA hash %s: they come from different clusters; read both again from the first control-plane node", hash, j.CACertHash)
	}
	return nil
}

// CACertHash is kubeadm's discovery hash of a CA certificate: sha256 of its public key info.
func CACertHash(caPEM []byte) (string, error) {
	block, _ := pem.Decode(caPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("kubeadm: the CA file is not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", fmt.Errorf("kubeadm: parsing the CA certificate: %w", err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func validateToken(t string) error {
	id, secret, ok := strings.Cut(t, ".")
	if !ok || len(id) != 6 || len(secret) != 16 || !lowerAlnum(id) || !lowerAlnum(secret) {
		return errors.New("kubeadm: the bootstrap token must look like abcdef.0123456789abcdef ([a-z0-9]{6}.[a-z0-9]{16})")
	}
	return nil
}

func lowerAlnum(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func nonEmpty(s ...string) []string {
	var out []string
	for _, v := range s {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// Endpoint joins a host and the API server port.
func Endpoint(host string) string { return net.JoinHostPort(host, strconv.Itoa(APIServerPort)) }
