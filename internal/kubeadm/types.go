// Package kubeadm builds the typed configuration documents kubeadm, the kubelet and kube-proxy
// read: kubeadm.k8s.io/v1beta4 InitConfiguration, ClusterConfiguration and JoinConfiguration,
// kubelet.config.k8s.io/v1beta1 KubeletConfiguration and kubeproxy.config.k8s.io/v1alpha1
// KubeProxyConfiguration.
//
// The structs hold only the fields dhctl sets, with kubeadm's JSON names; everything else keeps
// kubeadm's defaults. They are written here rather than imported from k8s.io/kubernetes (not a
// library) or the staging config modules (which pull in apimachinery for a few dozen fields).
package kubeadm

// API versions and kinds of the documents.
const (
	KubeadmAPIVersion   = "kubeadm.k8s.io/v1beta4"
	KubeletAPIVersion   = "kubelet.config.k8s.io/v1beta1"
	KubeProxyAPIVersion = "kubeproxy.config.k8s.io/v1alpha1"
)

// TypeMeta is apiVersion + kind.
type TypeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// Arg is one command-line flag of a component (v1beta4 lists them instead of a map).
type Arg struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// InitConfiguration is what `kubeadm init` needs beyond the cluster: the first node and the
// bootstrap token other nodes join with.
type InitConfiguration struct {
	TypeMeta         `json:",inline"`
	BootstrapTokens  []BootstrapToken `json:"bootstrapTokens,omitempty"`
	NodeRegistration NodeRegistration `json:"nodeRegistration"`
	LocalAPIEndpoint APIEndpoint      `json:"localAPIEndpoint"`
	CertificateKey   string           `json:"certificateKey,omitempty"`
	SkipPhases       []string         `json:"skipPhases,omitempty"`
}

// BootstrapToken is a kubeadm bootstrap token ("abcdef.0123456789abcdef"); secret.
type BootstrapToken struct {
	Token       string   `json:"token"`
	Description string   `json:"description,omitempty"`
	TTL         string   `json:"ttl,omitempty"`
	Usages      []string `json:"usages,omitempty"`
	Groups      []string `json:"groups,omitempty"`
}

// NodeRegistration is how a node registers itself.
type NodeRegistration struct {
	Name                  string   `json:"name,omitempty"`
	CRISocket             string   `json:"criSocket,omitempty"`
	KubeletExtraArgs      []Arg    `json:"kubeletExtraArgs,omitempty"`
	IgnorePreflightErrors []string `json:"ignorePreflightErrors,omitempty"`
	ImagePullPolicy       string   `json:"imagePullPolicy,omitempty"`
	Taints                *[]Taint `json:"taints,omitempty"`
}

// Taint is a node taint.
type Taint struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Effect string `json:"effect"`
}

// APIEndpoint is where one API server listens.
type APIEndpoint struct {
	AdvertiseAddress string `json:"advertiseAddress,omitempty"`
	BindPort         int32  `json:"bindPort,omitempty"`
}

// ClusterConfiguration is the cluster-wide part of kubeadm's configuration.
type ClusterConfiguration struct {
	TypeMeta             `json:",inline"`
	ClusterName          string                `json:"clusterName,omitempty"`
	KubernetesVersion    string                `json:"kubernetesVersion"`
	ControlPlaneEndpoint string                `json:"controlPlaneEndpoint,omitempty"`
	ImageRepository      string                `json:"imageRepository,omitempty"`
	CertificatesDir      string                `json:"certificatesDir,omitempty"`
	Networking           Networking            `json:"networking"`
	Etcd                 Etcd                  `json:"etcd"`
	APIServer            APIServer             `json:"apiServer"`
	ControllerManager    ControlPlaneComponent `json:"controllerManager"`
	Scheduler            ControlPlaneComponent `json:"scheduler"`
	DNS                  DNS                   `json:"dns"`
}

// DNS is kubeadm's CoreDNS add-on.
type DNS struct {
	// Disabled keeps kubeadm from installing CoreDNS (init, and upgrades, which read it from the
	// kubeadm-config ConfigMap): dhctl installs it.
	Disabled bool `json:"disabled,omitempty"`
}

// Networking holds the cluster's address ranges and DNS domain.
type Networking struct {
	DNSDomain     string `json:"dnsDomain,omitempty"`
	PodSubnet     string `json:"podSubnet,omitempty"`
	ServiceSubnet string `json:"serviceSubnet,omitempty"`
}

// Etcd is the local (stacked) etcd.
type Etcd struct {
	Local *LocalEtcd `json:"local,omitempty"`
}

// LocalEtcd is an etcd run as a static pod on every control-plane node.
type LocalEtcd struct {
	DataDir   string `json:"dataDir,omitempty"`
	ExtraArgs []Arg  `json:"extraArgs,omitempty"`
}

// APIServer configures kube-apiserver.
type APIServer struct {
	ControlPlaneComponent `json:",inline"`
	CertSANs              []string `json:"certSANs,omitempty"`
}

// ControlPlaneComponent holds a component's extra flags.
type ControlPlaneComponent struct {
	ExtraArgs []Arg `json:"extraArgs,omitempty"`
}

// JoinConfiguration is what `kubeadm join` needs.
type JoinConfiguration struct {
	TypeMeta         `json:",inline"`
	NodeRegistration NodeRegistration  `json:"nodeRegistration"`
	Discovery        Discovery         `json:"discovery"`
	ControlPlane     *JoinControlPlane `json:"controlPlane,omitempty"`
	SkipPhases       []string          `json:"skipPhases,omitempty"`
}

// Discovery says how a joining node finds and trusts the cluster.
type Discovery struct {
	BootstrapToken *BootstrapTokenDiscovery `json:"bootstrapToken,omitempty"`
	File           *FileDiscovery           `json:"file,omitempty"`
	// TLSBootstrapToken is the token the kubelet's TLS bootstrap authenticates with when the
	// discovery is a file without credentials.
	TLSBootstrapToken string `json:"tlsBootstrapToken,omitempty"`
}

// FileDiscovery trusts the cluster CA given in a kubeconfig file on the node.
type FileDiscovery struct {
	KubeConfigPath string `json:"kubeConfigPath"`
}

// BootstrapTokenDiscovery trusts the cluster CA by its public key hash.
type BootstrapTokenDiscovery struct {
	Token             string   `json:"token"`
	APIServerEndpoint string   `json:"apiServerEndpoint"`
	CACertHashes      []string `json:"caCertHashes,omitempty"`
}

// JoinControlPlane makes a joining node another control-plane node.
type JoinControlPlane struct {
	LocalAPIEndpoint APIEndpoint `json:"localAPIEndpoint"`
	CertificateKey   string      `json:"certificateKey,omitempty"`
}

// KubeletConfiguration is the subset of kubelet.config.k8s.io/v1beta1 dhctl sets.
type KubeletConfiguration struct {
	TypeMeta                 `json:",inline"`
	CgroupDriver             string   `json:"cgroupDriver,omitempty"`
	ClusterDomain            string   `json:"clusterDomain,omitempty"`
	ClusterDNS               []string `json:"clusterDNS,omitempty"`
	ContainerRuntimeEndpoint string   `json:"containerRuntimeEndpoint,omitempty"`
	FailSwapOn               *bool    `json:"failSwapOn,omitempty"`
	RotateCertificates       bool     `json:"rotateCertificates,omitempty"`
	ServerTLSBootstrap       bool     `json:"serverTLSBootstrap,omitempty"`
	MaxPods                  int32    `json:"maxPods,omitempty"`
}

// KubeProxyConfiguration is the subset of kubeproxy.config.k8s.io/v1alpha1 dhctl sets.
type KubeProxyConfiguration struct {
	TypeMeta    `json:",inline"`
	Mode        string              `json:"mode,omitempty"`
	ClusterCIDR string              `json:"clusterCIDR,omitempty"`
	Conntrack   *KubeProxyConntrack `json:"conntrack,omitempty"`
}

// KubeProxyConntrack holds kube-proxy's conntrack settings. MaxPerCore 0 leaves nf_conntrack_max
// alone (needed where it cannot be set, e.g. in a container's network namespace).
type KubeProxyConntrack struct {
	MaxPerCore *int32 `json:"maxPerCore,omitempty"`
	Min        *int32 `json:"min,omitempty"`
}
