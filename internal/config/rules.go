package config

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	dhssh "github.com/dhctl-dev/dhctl/internal/ssh"
)

// assemble decodes the valid documents into a Cluster and runs the cross-field rules. Problems
// are appended to l.problems; the returned Cluster is meaningful only when there are none.
func (l *loader) assemble(needClusterConfiguration bool) *Cluster {
	c := &Cluster{schemas: l.reg}
	firstOf := map[string]*loadedDoc{} // singleton kind -> first document of it
	var ccDoc, staticDoc, initDoc, sshDoc, providerDoc *loadedDoc
	var ngDocs, mcDocs, hostDocs []*loadedDoc

	for _, d := range l.docs {
		if l.stop() {
			break
		}
		c.Documents = append(c.Documents, d.Document)
		singleton := d.Kind == KindClusterConfiguration || d.Kind == KindInitConfiguration ||
			d.Kind == KindStaticClusterConfiguration || d.Kind == KindSSHConfig || isProviderKind(d.Kind)
		if singleton {
			key := d.Kind
			if isProviderKind(d.Kind) {
				key = "provider"
			}
			if first, dup := firstOf[key]; dup {
				l.add(d.problem(nil,
					fmt.Sprintf("a second %s document (the first is %s)", d.Kind, first.where()), "keep only one"))
				continue
			}
			firstOf[key] = d
		}
		var p *Problem
		switch d.Kind {
		case KindClusterConfiguration:
			ccDoc, p = d, decodeInto(d, &c.ClusterConfiguration)
		case KindInitConfiguration:
			initDoc, c.InitConfiguration = d, &InitConfiguration{}
			p = decodeInto(d, c.InitConfiguration)
		case KindStaticClusterConfiguration:
			staticDoc, c.StaticClusterConfiguration = d, &StaticClusterConfiguration{}
			p = decodeInto(d, c.StaticClusterConfiguration)
		case KindSSHConfig:
			sshDoc, c.SSHConfig = d, &SSHConfig{}
			p = decodeInto(d, c.SSHConfig)
		case KindSSHHost:
			var h SSHHost
			p = decodeInto(d, &h)
			c.SSHHosts = append(c.SSHHosts, h)
			hostDocs = append(hostDocs, d)
		case KindNodeGroup:
			var ng NodeGroup
			p = decodeInto(d, &ng)
			c.NodeGroups = append(c.NodeGroups, ng)
			ngDocs = append(ngDocs, d)
		case KindModuleConfig:
			var mc ModuleConfig
			p = decodeInto(d, &mc)
			c.ModuleConfigs = append(c.ModuleConfigs, mc)
			mcDocs = append(mcDocs, d)
		default:
			if isProviderKind(d.Kind) {
				providerDoc = d
				doc := d.Document
				c.ProviderClusterConfiguration = &doc
			}
		}
		if p != nil {
			l.add(*p)
		}
	}
	for _, d := range l.res {
		c.Resources = append(c.Resources, d.Document)
	}

	if ccDoc == nil {
		if needClusterConfiguration && !l.mayHaveClusterConfiguration {
			l.add(Problem{
				Message: "no ClusterConfiguration document in the --config files",
				Hint:    "add one with apiVersion: deckhouse.io/v1, kind: ClusterConfiguration"})
		}
	} else {
		cc := &c.ClusterConfiguration
		l.checkClusterType(cc, ccDoc, providerDoc)
		l.checkNetworks(cc, ccDoc, c.StaticClusterConfiguration, staticDoc)
		c.KubernetesVersion = l.checkKubernetesVersion(cc, ccDoc)
		l.checkNodeGroups(cc, c.NodeGroups, ngDocs)
		if cc.ClusterType == ClusterTypeCloud && providerDoc != nil {
			l.checkProviderNodeGroups(c.NodeGroups, ngDocs, providerDoc)
		}
	}
	if c.InitConfiguration != nil {
		l.checkRegistry(&c.InitConfiguration.Deckhouse, initDoc)
		l.checkPlatformImage(&c.InitConfiguration.Deckhouse, initDoc)
	}
	l.checkModuleConfigs(c.ModuleConfigs, mcDocs)
	if c.SSHConfig != nil {
		l.checkSSH(c.SSHConfig, sshDoc)
	}
	seenHost := map[string]*loadedDoc{}
	for i, h := range c.SSHHosts {
		if l.stop() {
			break
		}
		if first, dup := seenHost[h.Host]; dup {
			l.add(hostDocs[i].problem([]string{"host"},
				fmt.Sprintf("host %s is listed twice (also %s)", hostDocs[i].showName([]string{"host"}, h.Host), first.where()), "remove one of the SSHHost documents"))
			continue
		}
		seenHost[h.Host] = hostDocs[i]
	}
	return c
}

// providerKinds are Deckhouse's kind names of the provider documents, by cloud.provider value.
var providerKinds = map[string]string{
	"OpenStack": "OpenStackClusterConfiguration", "AWS": "AWSClusterConfiguration",
	"GCP": "GCPClusterConfiguration", "Yandex": "YandexClusterConfiguration",
	"vSphere": "VsphereClusterConfiguration", "Azure": "AzureClusterConfiguration",
	"VCD": "VCDClusterConfiguration", "Zvirt": "ZvirtClusterConfiguration",
	"Dynamix": "DynamixClusterConfiguration", "Huaweicloud": "HuaweiCloudClusterConfiguration",
}

func providerKindFor(provider string) string {
	if k, ok := providerKinds[provider]; ok {
		return k
	}
	return provider + "ClusterConfiguration"
}

// checkClusterType: a Cloud cluster needs its provider's document, a Static one must not have any.
func (l *loader) checkClusterType(cc *ClusterConfiguration, ccDoc, providerDoc *loadedDoc) {
	switch cc.ClusterType {
	case ClusterTypeStatic:
		if cc.Cloud != nil {
			l.add(ccDoc.problem([]string{"cloud"},
				"is only for clusterType: Cloud", "remove the cloud section or set clusterType: Cloud"))
		}
		if providerDoc != nil {
			l.add(providerDoc.problem(nil,
				fmt.Sprintf("this document needs clusterType: Cloud, but ClusterConfiguration (%s) says Static", ccDoc.where()),
				"remove this document or set clusterType: Cloud with cloud.provider"))
		}
	case ClusterTypeCloud:
		if cc.Cloud == nil {
			l.add(ccDoc.problem([]string{"cloud"},
				"required field is missing for clusterType: Cloud", "add cloud.provider (and cloud.prefix)"))
			return
		}
		want := providerKindFor(cc.Cloud.Provider)
		switch {
		case providerDoc == nil:
			hint := fmt.Sprintf("add a document of kind %s to a --config file", want)
			if !l.reg.Has(want) {
				hint = fmt.Sprintf("this dhctl has no %s provider; use a build with it, or clusterType: Static", cc.Cloud.Provider)
			}
			l.add(ccDoc.problem([]string{"cloud", "provider"},
				fmt.Sprintf("clusterType Cloud with provider %s needs a document of kind %s, and there is none", cc.Cloud.Provider, want), hint))
		case !strings.EqualFold(providerDoc.Kind, want):
			l.add(providerDoc.problem([]string{"kind"},
				fmt.Sprintf("%s does not match cloud.provider %s in ClusterConfiguration (%s)", providerDoc.Kind, cc.Cloud.Provider, ccDoc.where()),
				fmt.Sprintf("use kind %s, or change cloud.provider", want)))
		}
	}
}

// namedCIDR is a network with the field it came from, for overlap messages.
type namedCIDR struct {
	prefix netip.Prefix
	text   string
	field  string // e.g. podSubnetCIDR
	doc    *loadedDoc
	path   []string
}

// parseNetwork checks that text is an IPv4 network address with its prefix; nil after a problem.
func (l *loader) parseNetwork(d *loadedDoc, path []string, field, text string) *namedCIDR {
	p, err := netip.ParsePrefix(text)
	if err != nil || !p.Addr().Is4() {
		l.add(d.problem(path, fmt.Sprintf("%s is not a valid IPv4 CIDR", d.show(path, text)), "write it as a.b.c.d/n with each number 0-255 and n 0-32, e.g. 10.111.0.0/16"))
		return nil
	}
	if p.Masked() != p {
		hint := fmt.Sprintf("use the network address %s", p.Masked())
		if d.fromEnv(path) != nil {
			hint = "use the network address (the value with its host bits zeroed)"
		}
		l.add(d.problem(path, fmt.Sprintf("%s has host bits set", d.show(path, text)), hint))
		return nil
	}
	return &namedCIDR{prefix: p, text: text, field: field, doc: d, path: path}
}

// checkNetworks: pod, service and node networks must be valid and must not overlap, and the
// per-node pod prefix must fit podSubnetCIDR.
func (l *loader) checkNetworks(cc *ClusterConfiguration, ccDoc *loadedDoc, scc *StaticClusterConfiguration, sccDoc *loadedDoc) {
	pod := l.parseNetwork(ccDoc, []string{"podSubnetCIDR"}, "podSubnetCIDR", cc.PodSubnetCIDR)
	svc := l.parseNetwork(ccDoc, []string{"serviceSubnetCIDR"}, "serviceSubnetCIDR", cc.ServiceSubnetCIDR)
	nets := []*namedCIDR{pod, svc}
	if scc != nil {
		for i, text := range scc.InternalNetworkCIDRs {
			if l.stop() {
				return
			}
			nets = append(nets, l.parseNetwork(sccDoc, []string{"internalNetworkCIDRs", strconv.Itoa(i)}, fmt.Sprintf("internalNetworkCIDRs[%d]", i), text))
		}
	}
	overlappingPairs(nets, func(a, b *namedCIDR) bool {
		{
			// Report on the later field, naming the earlier one (and its document if another).
			other := a.field + " " + a.doc.show(a.path, a.text)
			if a.doc.fromEnv(a.path) != nil {
				other = a.field + ", " + a.doc.show(a.path, a.text) + ","
			}
			if a.doc != b.doc {
				other += fmt.Sprintf(" (%s in %s)", a.doc.Kind, a.doc.where())
			}
			hint := "choose non-overlapping ranges"
			if a.field == "podSubnetCIDR" && b.field == "serviceSubnetCIDR" {
				// The example of the brief reads from the pod side; keep the pod first.
				svc := " " + b.doc.show(b.path, b.text)
				if b.doc.fromEnv(b.path) != nil {
					svc = ", " + b.doc.show(b.path, b.text)
				}
				l.add(ccDoc.problem([]string{"podSubnetCIDR"},
					fmt.Sprintf("%s overlaps serviceSubnetCIDR%s", a.doc.show(a.path, a.text), svc), hint))
				return !l.stop()
			}
			l.add(b.doc.problem(b.path, fmt.Sprintf("%s overlaps %s", b.doc.show(b.path, b.text), strings.TrimSuffix(other, ",")), hint))
		}
		return !l.stop()
	})
	if pod != nil {
		path := []string{"podSubnetNodeCIDRPrefix"}
		n, err := strconv.Atoi(cc.PodSubnetNodeCIDRPrefix)
		podBits := pod.prefix.Bits()
		// What is printed of the two values, unless they came from the environment: then the
		// hints, which are computed from them, say what to do without numbers.
		perNode := fmt.Sprintf("/%d per node", n)
		if ccDoc.fromEnv(path) != nil {
			perNode = "the prefix per node, " + ccDoc.show(path, "") + ","
		}
		podText, podHidden := pod.text, ccDoc.fromEnv(pod.path) != nil
		if podHidden {
			podText = "(" + ccDoc.show(pod.path, "") + ")"
		}
		switch {
		case err != nil || n > 30:
			l.add(ccDoc.problem(path, fmt.Sprintf("%s is not a prefix length from 1 to 30", ccDoc.show(path, cc.PodSubnetNodeCIDRPrefix)), `use e.g. "24"`))
		case n <= podBits:
			hint := fmt.Sprintf("use a longer prefix than /%d (e.g. \"%d\") or a wider podSubnetCIDR", podBits, min(podBits+8, 30))
			if podHidden || ccDoc.fromEnv(path) != nil {
				hint = "use a longer prefix than podSubnetCIDR's, or a wider podSubnetCIDR"
			}
			l.add(ccDoc.problem(path, fmt.Sprintf("%s does not fit into podSubnetCIDR %s", perNode, podText), hint))
		case n-podBits > 16:
			hint := fmt.Sprintf("use a prefix of at most /%d or a narrower podSubnetCIDR", podBits+16)
			if podHidden || ccDoc.fromEnv(path) != nil {
				hint = "use a prefix at most 16 longer than podSubnetCIDR's, or a narrower podSubnetCIDR"
			}
			l.add(ccDoc.problem(path,
				fmt.Sprintf("%s splits podSubnetCIDR %s into more than 65536 node ranges, which kube-controller-manager refuses", perNode, podText), hint))
		}
	}
}

// overlappingPairs calls f(earlier, later) for every pair of overlapping networks, later and
// earlier in the order of nets (nil entries skipped), until f returns false. Two prefixes overlap
// only when one contains the other, so after sorting by first address a sweep with a stack of the
// prefixes still open finds them in O(n log n + pairs), not O(n²): a list of thousands of
// internalNetworkCIDRs is checked as fast as the usual two or three.
func overlappingPairs(nets []*namedCIDR, f func(a, b *namedCIDR) bool) {
	type item struct {
		n     *namedCIDR
		order int
	}
	var items []item
	for i, n := range nets {
		if n != nil {
			items = append(items, item{n, i})
		}
	}
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i].n.prefix, items[j].n.prefix
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits() // the wider one first: it contains the other
	})
	var open []item
	var pairs [][2]item
	for _, it := range items {
		for len(open) > 0 && !open[len(open)-1].n.prefix.Contains(it.n.prefix.Addr()) {
			open = open[:len(open)-1]
		}
		for _, o := range open {
			pairs = append(pairs, [2]item{o, it})
		}
		open = append(open, it)
		if len(pairs) >= maxProblems {
			break // more than can be reported
		}
	}
	// Report in input order, as a reader walks the files.
	for i := range pairs {
		if pairs[i][0].order > pairs[i][1].order {
			pairs[i][0], pairs[i][1] = pairs[i][1], pairs[i][0]
		}
	}
	sort.SliceStable(pairs, func(i, j int) bool {
		if pairs[i][1].order != pairs[j][1].order {
			return pairs[i][1].order < pairs[j][1].order
		}
		return pairs[i][0].order < pairs[j][0].order
	})
	for _, p := range pairs {
		if !f(p[0].n, p[1].n) {
			return
		}
	}
}

func (l *loader) checkKubernetesVersion(cc *ClusterConfiguration, d *loadedDoc) string {
	if cc.KubernetesVersion == KubernetesVersionAutomatic {
		return l.vm.Default()
	}
	if _, ok := l.vm.Release(cc.KubernetesVersion); ok {
		return cc.KubernetesVersion
	}
	l.add(d.problem([]string{"kubernetesVersion"},
		kubernetesVersionMessage(d, cc.KubernetesVersion),
		fmt.Sprintf("use one of: %s, or Automatic (= %s)", strings.Join(l.vm.Supported(), ", "), l.vm.Default())))
	return ""
}

// qualifiedName is a Kubernetes label key or taint key: optional DNS-subdomain prefix and "/",
// then a name of at most 63 characters.
var (
	labelName   = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)
	labelPrefix = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelValue  = regexp.MustCompile(`^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$`)
)

func validLabelKey(k string) bool {
	prefix, name, hasPrefix := strings.Cut(k, "/")
	if !hasPrefix {
		return labelName.MatchString(k)
	}
	return len(prefix) <= 253 && labelPrefix.MatchString(prefix) && labelName.MatchString(name)
}

// ProviderNodeGroupNames are the names of a provider document's nodeGroups entries, in order
// (every Deckhouse provider's ClusterConfiguration has them): dhctl makes their machines and
// their CloudPermanent NodeGroups.
func ProviderNodeGroupNames(provider *Document) []string {
	if provider == nil {
		return nil
	}
	list, _ := provider.Object["nodeGroups"].([]any)
	var names []string
	for _, e := range list {
		if m, ok := e.(map[string]any); ok {
			if name, ok := m["name"].(string); ok {
				names = append(names, name)
			}
		}
	}
	return names
}

// checkProviderNodeGroups: a NodeGroup document must not be named like one of the provider's
// nodeGroups, whose NodeGroup dhctl makes itself (CloudPermanent, with the entry's nodeTemplate).
func (l *loader) checkProviderNodeGroups(ngs []NodeGroup, docs []*loadedDoc, providerDoc *loadedDoc) {
	doc := providerDoc.Document
	names := ProviderNodeGroupNames(&doc)
	for i, ng := range ngs {
		if j := slices.Index(names, ng.Metadata.Name); j >= 0 {
			l.add(docs[i].problem([]string{"metadata", "name"},
				fmt.Sprintf("NodeGroup %s is also nodeGroups[%d] of %s (%s), whose NodeGroup dhctl makes (CloudPermanent, with that entry's nodeTemplate)",
					docs[i].showName([]string{"metadata", "name"}, ng.Metadata.Name), j, providerDoc.Kind, providerDoc.where()),
				"remove this document (set nodeTemplate in the nodeGroups entry), or rename it"))
		}
	}
}

func (l *loader) checkNodeGroups(cc *ClusterConfiguration, ngs []NodeGroup, docs []*loadedDoc) {
	seen := map[string]*loadedDoc{}
	for i, ng := range ngs {
		if l.stop() {
			return
		}
		d := docs[i]
		if first, dup := seen[ng.Metadata.Name]; dup {
			l.add(d.problem([]string{"metadata", "name"},
				fmt.Sprintf("NodeGroup %s is defined twice (also %s)", d.showName([]string{"metadata", "name"}, ng.Metadata.Name), first.where()), "rename or remove one"))
		} else {
			seen[ng.Metadata.Name] = d
		}
		spec := ng.Spec
		isCloudType := spec.NodeType == NodeTypeCloudEphemeral || spec.NodeType == NodeTypeCloudPermanent
		if isCloudType && cc.ClusterType == ClusterTypeStatic {
			l.add(d.problem([]string{"spec", "nodeType"},
				fmt.Sprintf("nodeType %s needs clusterType: Cloud, but the cluster is Static", spec.NodeType), "use nodeType: Static"))
		}
		switch {
		case spec.NodeType == NodeTypeCloudEphemeral && spec.CloudInstances == nil:
			l.add(d.problem([]string{"spec", "cloudInstances"},
				"required field is missing for nodeType CloudEphemeral", "add cloudInstances with classReference, minPerZone and maxPerZone"))
		case spec.NodeType != NodeTypeCloudEphemeral && spec.CloudInstances != nil:
			l.add(d.problem([]string{"spec", "cloudInstances"},
				fmt.Sprintf("is only for nodeType CloudEphemeral, not %s", spec.NodeType), "remove it or change nodeType"))
		}
		if spec.StaticInstances != nil && spec.NodeType != NodeTypeStatic {
			l.add(d.problem([]string{"spec", "staticInstances"},
				fmt.Sprintf("is only for nodeType Static, not %s", spec.NodeType), "remove it or change nodeType"))
		}
		if ci := spec.CloudInstances; ci != nil && ci.MinPerZone != nil && ci.MaxPerZone != nil && *ci.MinPerZone > *ci.MaxPerZone {
			l.add(d.problem([]string{"spec", "cloudInstances", "minPerZone"},
				fmt.Sprintf("minPerZone %d is greater than maxPerZone %d", *ci.MinPerZone, *ci.MaxPerZone), "make minPerZone <= maxPerZone"))
		}
		if t := spec.NodeTemplate; t != nil {
			for k, v := range t.Labels {
				if l.stop() {
					return
				}
				path := []string{"spec", "nodeTemplate", "labels", k}
				if !validLabelKey(k) {
					l.add(d.problemKey(path, fmt.Sprintf("%s is not a valid label key", d.showKey(path, k)), "use [prefix/]name: name up to 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit"))
				}
				if !labelValue.MatchString(v) {
					l.add(d.problem(path, fmt.Sprintf("%s is not a valid label value", d.show(path, v)), "use up to 63 letters, digits, '-', '_', '.', starting and ending with a letter or digit"))
				}
			}
			for j, taint := range t.Taints {
				if l.stop() {
					return
				}
				if !validLabelKey(taint.Key) {
					l.add(d.problem([]string{"spec", "nodeTemplate", "taints", strconv.Itoa(j), "key"},
						fmt.Sprintf("%s is not a valid taint key", d.show([]string{"spec", "nodeTemplate", "taints", strconv.Itoa(j), "key"}, taint.Key)), "use [prefix/]name, e.g. dedicated.example.com/role"))
				}
			}
		}
	}
}

// kubernetesVersionMessage says that version (the field of d) is not one this dhctl has.
func kubernetesVersionMessage(d *loadedDoc, version string) string {
	if d.fromEnv([]string{"kubernetesVersion"}) != nil {
		return fmt.Sprintf("Kubernetes version %s is not supported by this dhctl", d.show([]string{"kubernetesVersion"}, version))
	}
	return fmt.Sprintf("Kubernetes %s is not supported by this dhctl", shortText(version))
}

// showName is a name (of a node group, a host) at path for a message, as written or, when it
// came from the environment, as "(the value of environment variable X)".
func (d *loadedDoc) showName(path []string, name string) string {
	if d.fromEnv(path) != nil {
		return "(" + d.show(path, name) + ")"
	}
	return shortText(name)
}

// showKey is show for the map key that ends path.
func (d *loadedDoc) showKey(path []string, key string) string {
	if d.keyFromEnv(path) {
		keys := keyNodes(d.root, path)
		return "the key from " + envVars(d.env.namesOf(keys[len(keys)-1]))
	}
	return strconv.Quote(shortText(key))
}

// problemKey is problem pointing at the key's line (for a bad map key).
func (d *loadedDoc) problemKey(path []string, msg, hint string) Problem {
	return problemAt(d.File, d.Index, d.Kind, d.root, d.Object, d.env, path, true, msg, hint)
}

func (l *loader) checkModuleConfigs(mcs []ModuleConfig, docs []*loadedDoc) {
	seen := map[string]*loadedDoc{}
	for i, mc := range mcs {
		if l.stop() {
			return
		}
		d := docs[i]
		if first, dup := seen[mc.Metadata.Name]; dup {
			l.add(d.problem([]string{"metadata", "name"},
				fmt.Sprintf("ModuleConfig %s is defined twice (also %s)", d.showName([]string{"metadata", "name"}, mc.Metadata.Name), first.where()), "merge them into one"))
		} else {
			seen[mc.Metadata.Name] = d
		}
		if len(mc.Spec.Settings) > 0 && mc.Spec.Version == 0 {
			l.add(d.problem([]string{"spec", "version"},
				"required field is missing when spec.settings is set", "add spec.version, the version of the module's settings schema (e.g. 1)"))
		}
		if mc.Metadata.Name == "deckhouse" {
			l.checkDeckhouseSettings(mc.Spec.Settings, d)
		}
	}
}

// deckhouseSettingValues are the values the platform's own settings take: the installer reads
// bundle and logLevel (the controller's environment) and holds releaseChannel back.
var deckhouseSettingValues = []struct {
	key, noun string
	values    []string
}{
	{"bundle", "bundle", []string{"Default", "Minimal", "Managed"}},
	{"logLevel", "log level", []string{"Debug", "Info", "Error"}},
	{"releaseChannel", "release channel", []string{"Alpha", "Beta", "EarlyAccess", "Stable", "RockSolid"}},
}

func (l *loader) checkDeckhouseSettings(settings map[string]any, d *loadedDoc) {
	for _, f := range deckhouseSettingValues {
		v, present := settings[f.key]
		if !present {
			continue
		}
		path := []string{"spec", "settings", f.key}
		s, ok := v.(string)
		if !ok {
			l.add(d.problem(path, "is not a string", "write one of "+strings.Join(f.values, ", ")))
			continue
		}
		if slices.Contains(f.values, s) {
			continue
		}
		hint := "write one of " + strings.Join(f.values, ", ")
		for _, want := range f.values {
			if strings.EqualFold(strings.ReplaceAll(s, "-", ""), want) {
				hint = "did you mean " + want + "?"
			}
		}
		l.add(d.problem(path, fmt.Sprintf("%q is not a %s", s, f.noun), hint))
	}
}

// checkPlatformImage: one way of naming the platform image, a tag that pins a version, and node
// images on the registry whose credentials, scheme and CA the configuration gives.
func (l *loader) checkPlatformImage(dh *DeckhouseInit, d *loadedDoc) {
	base := []string{"deckhouse"}
	if dh.PlatformImage != "" && dh.DevBranch != "" {
		l.add(d.problem(child(base, "devBranch"), "is set together with platformImage; both name the platform image",
			"keep one: devBranch: <tag> means platformImage: \":<tag>\""))
	}
	for _, f := range []struct{ field, value string }{{"platformImage", dh.PlatformImage}, {"devBranch", ":" + dh.DevBranch}} {
		if f.value == "" || f.value == ":" {
			continue
		}
		ref := f.value
		if strings.HasPrefix(ref, ":") {
			ref = dh.ImagesRepository() + ref
		}
		if tag := imageTag(ref); channelTag(tag) {
			l.add(d.problem(child(base, f.field), fmt.Sprintf("names the release channel %q, whose image moves during the bootstrap", tag),
				"give the version tag of the platform, such as v1.70.3 (the channel is set in the deckhouse ModuleConfig's settings.releaseChannel, applied once the platform is ready)"))
		}
	}
	if dh.NodeImagesRepo != "" {
		host, _, _ := strings.Cut(dh.ImagesRepo, "/")
		nodeHost, _, _ := strings.Cut(dh.NodeImagesRepo, "/")
		if !strings.EqualFold(host, nodeHost) {
			l.add(d.problem(child(base, "nodeImagesRepo"), "is on another registry than imagesRepo; the nodes use one registry's credentials, scheme and CA",
				"put the node images on the registry of imagesRepo, under any path (dhctl mirror push <bundle> <that path>)"))
		}
	}
}

// checkRegistry: the CA must be PEM certificates, the docker config base64 of a config.json with
// credentials for the registry of imagesRepo. Neither value is ever quoted back.
func (l *loader) checkRegistry(dh *DeckhouseInit, d *loadedDoc) {
	base := []string{"deckhouse"}
	if dh.RegistryCA != "" {
		path := child(base, "registryCA")
		if msg := checkPEMCertificates(dh.RegistryCA); msg != "" {
			l.add(d.problem(path, msg,
				"paste the CA certificate including the -----BEGIN CERTIFICATE----- and -----END CERTIFICATE----- lines (use a | block)"))
		} else if dh.RegistryScheme == "HTTP" {
			l.add(d.problem(path, "is set, but registryScheme is HTTP, which uses no TLS", "set registryScheme: HTTPS, or remove registryCA"))
		}
	}
	if dh.RegistryDockerCfg != "" {
		path := child(base, "registryDockerCfg")
		host, _, _ := strings.Cut(dh.ImagesRepo, "/")
		shownHost := host
		if names := d.fromEnv(child(base, "imagesRepo")); names != nil {
			shownHost = ""
		}
		if msg, hint := checkDockerCfg(dh.RegistryDockerCfg, host, shownHost, d.fromEnv(path) != nil); msg != "" {
			if shownHost == "" && strings.Contains(msg, "the registry of imagesRepo") {
				msg += ", " + d.show(child(base, "imagesRepo"), "")
			}
			l.add(d.problem(path, msg, hint))
		}
	}
}

func checkPEMCertificates(text string) string {
	rest := []byte(strings.TrimSpace(text))
	if len(rest) == 0 {
		return "is empty"
	}
	n := 0
	for len(rest) > 0 {
		block, r := pem.Decode(rest)
		if block == nil {
			if n == 0 {
				return "is not a PEM certificate"
			}
			return "has text after the last PEM certificate"
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Sprintf("holds a PEM block of type %q; only CERTIFICATE blocks belong here", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Sprintf("PEM certificate %d does not parse: %v", n+1, err)
		}
		n++
		rest = []byte(strings.TrimSpace(string(r)))
	}
	return ""
}

const dockerCfgHint = `encode a docker config.json, e.g. base64 -w0 ~/.docker/config.json; it must look like {"auths":{"registry.example.com":{"auth":"<base64 of user:password>"}}}`

// checkDockerCfg checks a docker config for registryHost. shownHost is what messages may call it
// ("" when it came from the environment); hideHosts says that the hosts in the config itself
// came from the environment.
func checkDockerCfg(text, registryHost, shownHost string, hideHosts bool) (msg, hint string) {
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(text), ""))
	if err != nil {
		return "is not valid base64", dockerCfgHint
	}
	var cfg struct {
		Auths map[string]struct {
			Auth     string `json:"auth"`
			Username string `json:"username"`
			Password string `json:"password"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) || !json.Valid(raw) {
			return "is base64 but does not decode to JSON", dockerCfgHint
		}
		return "decodes to JSON of the wrong shape", dockerCfgHint
	}
	if cfg.Auths == nil {
		return `decodes to JSON without an "auths" object`, dockerCfgHint
	}
	for host, a := range cfg.Auths {
		if a.Auth == "" {
			continue
		}
		dec, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil || !strings.Contains(string(dec), ":") {
			if hideHosts {
				return "an auths entry's auth is not base64 of user:password", "encode it with: printf '%s' 'user:password' | base64 -w0"
			}
			return fmt.Sprintf("auths[%s].auth is not base64 of user:password", strconv.Quote(shortText(host))), "encode it with: printf '%s' 'user:password' | base64 -w0"
		}
	}
	if registryHost != "" {
		if _, ok := cfg.Auths[registryHost]; !ok {
			if shownHost == "" {
				return "has no credentials for the registry of imagesRepo", "add an auths entry for the registry host of imagesRepo"
			}
			return fmt.Sprintf("has no credentials for %s, the registry of imagesRepo", shortText(shownHost)), fmt.Sprintf("add an auths entry for %s", shortText(shownHost))
		}
	}
	return "", ""
}

// checkSSH: bastion settings need a bastion host; every key must parse (and decrypt, when a
// passphrase is given). A key without its passphrase is fine: the CLI asks for it.
func (l *loader) checkSSH(sc *SSHConfig, d *loadedDoc) {
	// Deckhouse's dhctl hands sshExtraArgs to an ssh binary; dhctl speaks SSH itself, so there is
	// nothing to hand them to. Accepting them would silently drop what the user asked for.
	if sc.SSHExtraArgs != "" {
		l.add(d.problem([]string{"sshExtraArgs"}, "is not supported: dhctl does not run an ssh binary to pass arguments to",
			"remove it; use sshPort, sshBastionHost/Port/User, sshAgentPrivateKeys, --ssh-connect-timeout or --ssh-known-hosts for what the arguments did"))
	}
	if sc.SSHBastionHost == "" {
		for _, f := range []struct {
			name string
			set  bool
		}{{"sshBastionPort", sc.SSHBastionPort != 0}, {"sshBastionUser", sc.SSHBastionUser != ""}} {
			if f.set {
				l.add(d.problem([]string{f.name}, "is set, but sshBastionHost is not", "add sshBastionHost, or remove "+f.name))
			}
		}
	}
	for i, k := range sc.SSHAgentPrivateKeys {
		if l.stop() {
			return
		}
		path := []string{"sshAgentPrivateKeys", strconv.Itoa(i), "key"}
		_, err := ssh.ParseRawPrivateKey([]byte(k.Key))
		var missing *ssh.PassphraseMissingError
		switch {
		case err == nil:
		case errors.As(err, &missing):
			// The KDF's rounds are the key's to say (~8 ms each): a key may ask for days of
			// them. Checking the passphrase is a convenience, so past the run's budget it is
			// left to the SSH connection, which uses the passphrase anyway.
			rounds := dhssh.KDFRounds([]byte(k.Key))
			if k.Passphrase != "" && rounds <= l.budget.kdfRounds {
				l.budget.kdfRounds -= rounds
				if _, err := ssh.ParseRawPrivateKeyWithPassphrase([]byte(k.Key), []byte(k.Passphrase)); err != nil {
					l.add(d.problem(child(path[:2], "passphrase"), "does not decrypt the key", "check the passphrase"))
				}
			}
		default:
			l.add(d.problem(path, "is not a private key in PEM or OpenSSH format",
				"paste the whole private key file, including the -----BEGIN ... PRIVATE KEY----- line, as a | block"))
		}
	}
}
