package config

// Typed views of the documents dhctl understands, decoded after validation and defaulting, so every
// field a schema defaults is set. Field names and shapes follow Deckhouse's documents.

// Kinds with a built-in schema under candi/openapi.
const (
	KindClusterConfiguration       = "ClusterConfiguration"
	KindInitConfiguration          = "InitConfiguration"
	KindStaticClusterConfiguration = "StaticClusterConfiguration"
	KindSSHConfig                  = "SSHConfig"
	KindSSHHost                    = "SSHHost"
	KindNodeGroup                  = "NodeGroup"
	KindModuleConfig               = "ModuleConfig"
)

// Values of ClusterConfiguration.clusterType and NodeGroup.spec.nodeType.
const (
	ClusterTypeStatic = "Static"
	ClusterTypeCloud  = "Cloud"

	NodeTypeStatic         = "Static"
	NodeTypeCloudPermanent = "CloudPermanent"
	NodeTypeCloudEphemeral = "CloudEphemeral"
	NodeTypeCloudStatic    = "CloudStatic"

	// KubernetesVersionAutomatic means "the default minor of this dhctl's version map".
	KubernetesVersionAutomatic = "Automatic"
)

// TypeMeta is the apiVersion and kind every document carries.
type TypeMeta struct {
	APIVersion string `json:"apiVersion" yaml:"apiVersion"`
	Kind       string `json:"kind" yaml:"kind"`
}

// ObjectMeta is the part of Kubernetes metadata that NodeGroup and ModuleConfig use.
type ObjectMeta struct {
	Name        string            `json:"name" yaml:"name"`
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
}

// ClusterConfiguration holds the cluster-wide parameters (deckhouse.io/v1).
type ClusterConfiguration struct {
	TypeMeta                `json:",inline" yaml:",inline"`
	ClusterType             string        `json:"clusterType" yaml:"clusterType"`
	Cloud                   *CloudSection `json:"cloud,omitempty" yaml:"cloud,omitempty"`
	PodSubnetCIDR           string        `json:"podSubnetCIDR" yaml:"podSubnetCIDR"`
	PodSubnetNodeCIDRPrefix string        `json:"podSubnetNodeCIDRPrefix" yaml:"podSubnetNodeCIDRPrefix"`
	ServiceSubnetCIDR       string        `json:"serviceSubnetCIDR" yaml:"serviceSubnetCIDR"`
	ClusterDomain           string        `json:"clusterDomain" yaml:"clusterDomain"`
	DefaultCRI              string        `json:"defaultCRI" yaml:"defaultCRI"`
	KubernetesVersion       string        `json:"kubernetesVersion" yaml:"kubernetesVersion"` // as written: "1.33" or "Automatic"
	EncryptionAlgorithm     string        `json:"encryptionAlgorithm" yaml:"encryptionAlgorithm"`
	Proxy                   *Proxy        `json:"proxy,omitempty" yaml:"proxy,omitempty"`
}

// CloudSection names the provider of a Cloud cluster.
type CloudSection struct {
	Provider string `json:"provider" yaml:"provider"`
	Prefix   string `json:"prefix,omitempty" yaml:"prefix,omitempty"`
}

// Proxy is the HTTP(S) proxy of the nodes. The URLs may carry credentials: treat them as secret.
type Proxy struct {
	HTTPProxy  string   `json:"httpProxy,omitempty" yaml:"httpProxy,omitempty"`
	HTTPSProxy string   `json:"httpsProxy,omitempty" yaml:"httpsProxy,omitempty"`
	NoProxy    []string `json:"noProxy,omitempty" yaml:"noProxy,omitempty"`
}

// InitConfiguration holds what only the first install needs (deckhouse.io/v1).
type InitConfiguration struct {
	TypeMeta  `json:",inline" yaml:",inline"`
	Deckhouse DeckhouseInit `json:"deckhouse" yaml:"deckhouse"`
}

// DeckhouseInit is where the platform images come from.
type DeckhouseInit struct {
	ImagesRepo        string `json:"imagesRepo" yaml:"imagesRepo"`
	RegistryDockerCfg string `json:"registryDockerCfg,omitempty" yaml:"registryDockerCfg,omitempty"` // secret: base64 of a docker config.json
	RegistryScheme    string `json:"registryScheme" yaml:"registryScheme"`                           // HTTP or HTTPS
	RegistryCA        string `json:"registryCA,omitempty" yaml:"registryCA,omitempty"`               // PEM
	// DevBranch is Deckhouse's field: the platform image is <imagesRepo>:<devBranch>.
	DevBranch string `json:"devBranch,omitempty" yaml:"devBranch,omitempty"`
	// PlatformImage is dhctl's: a full reference or ":<tag>" (see PlatformImageRef).
	PlatformImage string `json:"platformImage,omitempty" yaml:"platformImage,omitempty"`
	// NodeImagesRepo holds the node images and packages in dhctl's layout; "" = ImagesRepo.
	NodeImagesRepo string `json:"nodeImagesRepo,omitempty" yaml:"nodeImagesRepo,omitempty"`
}

// StaticClusterConfiguration holds settings of static nodes (deckhouse.io/v1).
type StaticClusterConfiguration struct {
	TypeMeta             `json:",inline" yaml:",inline"`
	InternalNetworkCIDRs []string `json:"internalNetworkCIDRs,omitempty" yaml:"internalNetworkCIDRs,omitempty"`
}

// SSHConfig says how to reach nodes over SSH (dhctl.deckhouse.io/v1alpha1).
type SSHConfig struct {
	TypeMeta            `json:",inline" yaml:",inline"`
	SSHUser             string          `json:"sshUser" yaml:"sshUser"`
	SSHPort             int             `json:"sshPort" yaml:"sshPort"`
	SSHAgentPrivateKeys []SSHPrivateKey `json:"sshAgentPrivateKeys" yaml:"sshAgentPrivateKeys"`
	SSHExtraArgs        string          `json:"sshExtraArgs,omitempty" yaml:"sshExtraArgs,omitempty"`
	SSHBastionHost      string          `json:"sshBastionHost,omitempty" yaml:"sshBastionHost,omitempty"`
	SSHBastionPort      int             `json:"sshBastionPort,omitempty" yaml:"sshBastionPort,omitempty"`
	SSHBastionUser      string          `json:"sshBastionUser,omitempty" yaml:"sshBastionUser,omitempty"`
	SudoPassword        string          `json:"sudoPassword,omitempty" yaml:"sudoPassword,omitempty"` // secret
}

// SSHPrivateKey is a private key (PEM or OpenSSH) and its passphrase; both secret.
type SSHPrivateKey struct {
	Key        string `json:"key" yaml:"key"`
	Passphrase string `json:"passphrase,omitempty" yaml:"passphrase,omitempty"`
}

// SSHHost is one host to connect to (dhctl.deckhouse.io/v1alpha1).
type SSHHost struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Host     string `json:"host" yaml:"host"`
}

// NodeGroup is a group of nodes with the same role and template (deckhouse.io/v1).
type NodeGroup struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata ObjectMeta    `json:"metadata" yaml:"metadata"`
	Spec     NodeGroupSpec `json:"spec" yaml:"spec"`
}

// NodeGroupSpec follows Deckhouse: a Static group's size is StaticInstances.Count, a
// CloudEphemeral group's is CloudInstances.MinPerZone..MaxPerZone per zone, and a CloudPermanent
// group's replicas live in the provider's ClusterConfiguration.
type NodeGroupSpec struct {
	NodeType        string           `json:"nodeType" yaml:"nodeType"`
	StaticInstances *StaticInstances `json:"staticInstances,omitempty" yaml:"staticInstances,omitempty"`
	CloudInstances  *CloudInstances  `json:"cloudInstances,omitempty" yaml:"cloudInstances,omitempty"`
	NodeTemplate    *NodeTemplate    `json:"nodeTemplate,omitempty" yaml:"nodeTemplate,omitempty"`
	CRI             *NodeGroupCRI    `json:"cri,omitempty" yaml:"cri,omitempty"`
}

// StaticInstances selects static machines for a group.
type StaticInstances struct {
	Count         *int           `json:"count,omitempty" yaml:"count,omitempty"`
	LabelSelector *LabelSelector `json:"labelSelector,omitempty" yaml:"labelSelector,omitempty"`
}

// LabelSelector matches labels exactly.
type LabelSelector struct {
	MatchLabels map[string]string `json:"matchLabels,omitempty" yaml:"matchLabels,omitempty"`
}

// CloudInstances says how many ephemeral machines of which class a group has per zone.
type CloudInstances struct {
	ClassReference ClassReference `json:"classReference" yaml:"classReference"`
	MinPerZone     *int           `json:"minPerZone,omitempty" yaml:"minPerZone,omitempty"`
	MaxPerZone     *int           `json:"maxPerZone,omitempty" yaml:"maxPerZone,omitempty"`
	Zones          []string       `json:"zones,omitempty" yaml:"zones,omitempty"`
}

// ClassReference points at a provider's instance class.
type ClassReference struct {
	Kind string `json:"kind" yaml:"kind"`
	Name string `json:"name" yaml:"name"`
}

// NodeTemplate is what every node of a group carries.
type NodeTemplate struct {
	Labels      map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty" yaml:"annotations,omitempty"`
	Taints      []Taint           `json:"taints,omitempty" yaml:"taints,omitempty"`
}

// Taint is a Kubernetes node taint.
type Taint struct {
	Key    string `json:"key" yaml:"key"`
	Value  string `json:"value,omitempty" yaml:"value,omitempty"`
	Effect string `json:"effect" yaml:"effect"`
}

// NodeGroupCRI overrides the cluster's default CRI for a group.
type NodeGroupCRI struct {
	Type string `json:"type,omitempty" yaml:"type,omitempty"`
}

// ModuleConfig enables and configures a platform module (deckhouse.io/v1alpha1).
type ModuleConfig struct {
	TypeMeta `json:",inline" yaml:",inline"`
	Metadata ObjectMeta       `json:"metadata" yaml:"metadata"`
	Spec     ModuleConfigSpec `json:"spec" yaml:"spec"`
}

// ModuleConfigSpec: Settings are module-specific and checked by the platform, not here.
type ModuleConfigSpec struct {
	Enabled  *bool          `json:"enabled,omitempty" yaml:"enabled,omitempty"`
	Version  int            `json:"version,omitempty" yaml:"version,omitempty"`
	Settings map[string]any `json:"settings,omitempty" yaml:"settings,omitempty"`
}
