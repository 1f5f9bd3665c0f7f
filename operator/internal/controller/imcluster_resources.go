package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

// Labels and annotations the operator sets.
const (
	labelName      = "app.kubernetes.io/name"
	labelInstance  = "app.kubernetes.io/instance"
	labelManagedBy = "app.kubernetes.io/managed-by"
	labelComponent = "app.kubernetes.io/component"
	managedBy      = "imcluster-operator"

	// AnnotationTemplateHash on the pod template (and so on every pod) is the
	// hash of the rendered template; a pod whose value differs from the
	// StatefulSet's is restarted by the rolling update.
	AnnotationTemplateHash = "imcluster.io/template-hash"
	// AnnotationConfigHash is the hash of the ConfigMap data; it is part of
	// the template, so a config change rolls the pods.
	AnnotationConfigHash = "imcluster.io/config-hash"
	// AnnotationVersion is spec.version as rendered into the template.
	AnnotationVersion = "imcluster.io/version"

	configFileKey  = "imnode.json"
	adminTokenKey  = "token"
	appsFileKey    = "apps.json"
	dataVolume     = "data"
	dataDir        = "/var/lib/imnode"
	configDir      = "/etc/imnode"
	appsDir        = "/etc/imnode/apps"
	tlsDir         = "/etc/imnode/tls"
	containerName  = "imnode"
	portNameClient = "client"
	portNameAdmin  = "admin"
	// Gossip is memberlist on TCP and UDP (one port, two protocols: two named
	// ports); the peer data transport is TCP on the next port.
	portNameGossip    = "gossip"
	portNameGossipUDP = "gossip-udp"
	portNameTransport = "transport"
	terminationSecs   = 120 // preStop connection drain (60s) plus shutdown
	// nodeUID is the distroless nonroot user the image runs as.
	nodeUID = 65532
)

func selectorLabels(c *imv1.IMCluster) map[string]string {
	return map[string]string{labelName: "imcluster", labelInstance: c.Name, labelManagedBy: managedBy}
}

func commonLabels(c *imv1.IMCluster) map[string]string {
	l := selectorLabels(c)
	l[labelComponent] = "node"
	return l
}

func peerServiceName(c *imv1.IMCluster) string   { return c.Name + "-peers" }
func clientServiceName(c *imv1.IMCluster) string { return c.Name }
func configMapName(c *imv1.IMCluster) string     { return c.Name + "-config" }
func statefulSetName(c *imv1.IMCluster) string   { return c.Name }
func pdbName(c *imv1.IMCluster) string           { return c.Name }
func podName(c *imv1.IMCluster, ordinal int32) string {
	return fmt.Sprintf("%s-%d", statefulSetName(c), ordinal)
}

func adminTokenSecret(c *imv1.IMCluster) (name, key string) {
	if ref := c.Spec.AdminTokenSecretRef; ref != nil {
		return ref.Name, ref.Key
	}
	return c.Name + "-admin-token", adminTokenKey
}

// ordinalOf parses the ordinal of a pod of c, or -1.
func ordinalOf(c *imv1.IMCluster, pod string) int32 {
	rest, ok := strings.CutPrefix(pod, statefulSetName(c)+"-")
	if !ok {
		return -1
	}
	n, err := strconv.ParseInt(rest, 10, 32)
	if err != nil || n < 0 {
		return -1
	}
	return int32(n)
}

func hashOf(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("controller: hash of unmarshalable value: %v", err)) // only our own types are hashed
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:16]
}

// nodeConfig is the node configuration file rendered into the ConfigMap.
type nodeConfig struct {
	ClusterName       string            `json:"clusterName"`
	Shards            int32             `json:"shards"`
	ReplicationFactor int32             `json:"replicationFactor"`
	WriteQuorum       int32             `json:"writeQuorum"`
	Retention         string            `json:"retention"`
	ClientPort        int32             `json:"clientPort"`
	AdminPort         int32             `json:"adminPort"`
	PeerPort          int32             `json:"peerPort"`
	Join              string            `json:"join"`
	DataDir           string            `json:"dataDir"`
	AppsFile          string            `json:"appsFile,omitempty"`
	TLSCertFile       string            `json:"tlsCertFile,omitempty"`
	TLSKeyFile        string            `json:"tlsKeyFile,omitempty"`
	Extra             map[string]string `json:"extra,omitempty"`
}

func desiredConfigMap(c *imv1.IMCluster) *corev1.ConfigMap {
	cfg := nodeConfig{
		ClusterName:       c.Name,
		Shards:            c.Spec.Shards,
		ReplicationFactor: c.Spec.ReplicationFactor,
		WriteQuorum:       c.Spec.WriteQuorum,
		Retention:         c.RetentionDuration().Duration.String(),
		ClientPort:        c.ClientPort(),
		AdminPort:         imv1.DefaultAdminPort,
		PeerPort:          imv1.DefaultPeerPort,
		Join:              fmt.Sprintf("%s.%s.svc:%d", peerServiceName(c), c.Namespace, imv1.DefaultPeerPort),
		DataDir:           dataDir,
		Extra:             c.Spec.ExtraConfig,
	}
	if c.Spec.AppsSecretRef != nil {
		cfg.AppsFile = appsDir + "/" + appsFileKey
	}
	if c.Spec.TLSSecretRef != nil {
		cfg.TLSCertFile = tlsDir + "/" + corev1.TLSCertKey
		cfg.TLSKeyFile = tlsDir + "/" + corev1.TLSPrivateKeyKey
	}
	data, _ := json.MarshalIndent(cfg, "", "  ") // plain struct of strings and ints: cannot fail
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: configMapName(c), Namespace: c.Namespace, Labels: commonLabels(c)},
		Data:       map[string]string{configFileKey: string(data) + "\n"},
	}
}

func desiredPeerService(c *imv1.IMCluster) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: peerServiceName(c), Namespace: c.Namespace, Labels: commonLabels(c)},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 selectorLabels(c),
			Ports: []corev1.ServicePort{
				{Name: portNameGossip, Port: imv1.DefaultPeerPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString(portNameGossip)},
				{Name: portNameGossipUDP, Port: imv1.DefaultPeerPort, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString(portNameGossipUDP)},
				{Name: portNameTransport, Port: imv1.DefaultTransportPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString(portNameTransport)},
				{Name: portNameAdmin, Port: imv1.DefaultAdminPort, TargetPort: intstr.FromString(portNameAdmin)},
				{Name: portNameClient, Port: c.ClientPort(), TargetPort: intstr.FromString(portNameClient)},
			},
		},
	}
}

// applyClientService sets the fields the operator owns on svc, leaving the
// ones the API server allocates (clusterIP, allocated node ports) alone.
func applyClientService(c *imv1.IMCluster, svc *corev1.Service) {
	svc.Labels = mergeLabels(svc.Labels, commonLabels(c))
	if len(c.Spec.Service.Annotations) > 0 {
		if svc.Annotations == nil {
			svc.Annotations = map[string]string{}
		}
		maps.Copy(svc.Annotations, c.Spec.Service.Annotations)
	}
	typ := c.Spec.Service.Type
	if typ == "" {
		typ = corev1.ServiceTypeClusterIP
	}
	svc.Spec.Type = typ
	svc.Spec.Selector = selectorLabels(c)
	port := corev1.ServicePort{Name: portNameClient, Port: c.ClientPort(), TargetPort: intstr.FromString(portNameClient),
		Protocol: corev1.ProtocolTCP}
	if typ != corev1.ServiceTypeClusterIP {
		port.NodePort = c.Spec.Service.NodePort
		if port.NodePort == 0 && len(svc.Spec.Ports) == 1 {
			port.NodePort = svc.Spec.Ports[0].NodePort // keep the allocated one
		}
	}
	svc.Spec.Ports = []corev1.ServicePort{port}
	if typ == corev1.ServiceTypeLoadBalancer {
		svc.Spec.LoadBalancerSourceRanges = c.Spec.Service.LoadBalancerSourceRanges
	} else {
		svc.Spec.LoadBalancerSourceRanges = nil
	}
}

func applyPDB(c *imv1.IMCluster, pdb *policyv1.PodDisruptionBudget) {
	pdb.Labels = mergeLabels(pdb.Labels, commonLabels(c))
	mu := intstr.FromInt32(1)
	if c.Spec.PodDisruptionBudget.MaxUnavailable != nil {
		mu = *c.Spec.PodDisruptionBudget.MaxUnavailable
	}
	pdb.Spec.MaxUnavailable = &mu
	pdb.Spec.MinAvailable = nil
	pdb.Spec.Selector = &metav1.LabelSelector{MatchLabels: selectorLabels(c)}
}

func mergeLabels(dst, src map[string]string) map[string]string {
	if dst == nil {
		dst = map[string]string{}
	}
	maps.Copy(dst, src)
	return dst
}

// desiredPodTemplate renders the pod template; configHash is the ConfigMap's
// hash, version the effective imnode version. The template hash annotation is
// computed over everything else.
func desiredPodTemplate(c *imv1.IMCluster, configHash, version, clusterDomain string) corev1.PodTemplateSpec {
	mounts, volumes := podVolumes(c)
	labels := mergeLabels(maps.Clone(c.Spec.Pod.Labels), commonLabels(c))
	annotations := mergeLabels(maps.Clone(c.Spec.Pod.Annotations),
		map[string]string{AnnotationConfigHash: configHash, AnnotationVersion: version})
	t := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			Containers:                    []corev1.Container{nodeContainer(c, mounts, version, clusterDomain)},
			Volumes:                       volumes,
			TerminationGracePeriodSeconds: ptr.To[int64](terminationSecs),
			Affinity:                      podAffinity(c),
			TopologySpreadConstraints:     c.Spec.Scheduling.TopologySpreadConstraints,
			Tolerations:                   c.Spec.Scheduling.Tolerations,
			NodeSelector:                  c.Spec.Scheduling.NodeSelector,
			PriorityClassName:             c.Spec.Scheduling.PriorityClassName,
			// imnode never calls the Kubernetes API: no token in the pod.
			AutomountServiceAccountToken: new(false),
			// Pod Security "restricted": non-root, RuntimeDefault seccomp.
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   new(true),
				RunAsUser:      ptr.To[int64](nodeUID),
				RunAsGroup:     ptr.To[int64](nodeUID),
				FSGroup:        ptr.To[int64](nodeUID),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
		},
	}
	t.Annotations[AnnotationTemplateHash] = hashOf(t)
	return t
}

func podVolumes(c *imv1.IMCluster) ([]corev1.VolumeMount, []corev1.Volume) {
	mounts := []corev1.VolumeMount{
		{Name: dataVolume, MountPath: dataDir},
		{Name: "config", MountPath: configDir, ReadOnly: true},
	}
	volumes := []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: configMapName(c)}}}}}
	if ref := c.Spec.AppsSecretRef; ref != nil {
		mounts = append(mounts, corev1.VolumeMount{Name: "apps", MountPath: appsDir, ReadOnly: true})
		volumes = append(volumes, corev1.Volume{Name: "apps", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: ref.Name}}})
	}
	credMounts, credVolumes := credentialVolumes(c)
	mounts, volumes = append(mounts, credMounts...), append(volumes, credVolumes...)
	if ref := c.Spec.TLSSecretRef; ref != nil {
		mounts = append(mounts, corev1.VolumeMount{Name: "tls", MountPath: tlsDir, ReadOnly: true})
		volumes = append(volumes, corev1.Volume{Name: "tls", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: ref.Name}}})
	}
	return mounts, volumes
}

// Default resources of the imnode container when spec.resources is empty
// (docs/operator.md, "Resources", has the measurements behind them).
var (
	defaultCPURequest    = resource.MustParse("500m")
	defaultMemoryRequest = resource.MustParse("512Mi")
	defaultMemoryLimit   = resource.MustParse("2Gi")
)

func nodeResources(c *imv1.IMCluster) corev1.ResourceRequirements {
	r := c.Spec.Resources
	if len(r.Requests) > 0 || len(r.Limits) > 0 || len(r.Claims) > 0 {
		return r
	}
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: defaultCPURequest, corev1.ResourceMemory: defaultMemoryRequest},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: defaultMemoryLimit},
	}
}

func nodeContainer(c *imv1.IMCluster, mounts []corev1.VolumeMount, version, clusterDomain string) corev1.Container {
	tokenName, tokenKey := adminTokenSecret(c)
	env := []corev1.EnvVar{
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "IMNODE_ADMIN_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: tokenName}, Key: tokenKey}}},
	}
	env = append(env, formationEnv(c)...)
	env = append(env, c.Spec.Pod.Env...) // the CRD refuses the names above
	adminProbe := func(path string) corev1.ProbeHandler {
		return corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString(portNameAdmin)}}
	}
	args := []string{
		"--config", configDir + "/" + configFileKey,
		"--node-id", "$(POD_NAME)",
		"--data-dir", dataDir,
		"--client-addr", fmt.Sprintf("0.0.0.0:%d", c.ClientPort()),
		"--admin-addr", fmt.Sprintf("0.0.0.0:%d", imv1.DefaultAdminPort),
		"--peer-addr", fmt.Sprintf("0.0.0.0:%d", imv1.DefaultPeerPort),
		"--transport-addr", fmt.Sprintf("0.0.0.0:%d", imv1.DefaultTransportPort),
		"--advertise-host", fmt.Sprintf("$(POD_NAME).%s.$(POD_NAMESPACE).svc", peerServiceName(c)),
		// One JSON object per line, for log collectors.
		"--log-format", "json",
	}
	args = append(args, credentialArgs()...)
	args = append(args, hostArgs(c, clusterDomain)...)
	return corev1.Container{
		Name:            containerName,
		Image:           c.ImageRef(version),
		ImagePullPolicy: c.Spec.ImagePullPolicy,
		Args:            args,
		Env:             env,
		Ports: []corev1.ContainerPort{
			{Name: portNameClient, ContainerPort: c.ClientPort(), Protocol: corev1.ProtocolTCP},
			{Name: portNameAdmin, ContainerPort: imv1.DefaultAdminPort, Protocol: corev1.ProtocolTCP},
			{Name: portNameGossip, ContainerPort: imv1.DefaultPeerPort, Protocol: corev1.ProtocolTCP},
			{Name: portNameGossipUDP, ContainerPort: imv1.DefaultPeerPort, Protocol: corev1.ProtocolUDP},
			{Name: portNameTransport, ContainerPort: imv1.DefaultTransportPort, Protocol: corev1.ProtocolTCP},
		},
		Resources:    nodeResources(c),
		VolumeMounts: mounts,
		// Ready means joined, caught up and serving (docs/architecture.md, docs/operator.md).
		ReadinessProbe: &corev1.Probe{ProbeHandler: adminProbe("/readyz"), PeriodSeconds: 5, FailureThreshold: 3},
		LivenessProbe:  &corev1.Probe{ProbeHandler: adminProbe("/healthz"), PeriodSeconds: 10, FailureThreshold: 6},
		// A catching-up node may take long to become ready; only liveness restarts it.
		StartupProbe: &corev1.Probe{ProbeHandler: adminProbe("/healthz"), PeriodSeconds: 5, FailureThreshold: 60},
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			// Drains the node's client connections (goaway, then wait up to 60s).
			// Shard hand-off is the operator's job before a scale-down: a
			// restarting node keeps its shards.
			Command: []string{"/imnode", "prestop", "--admin-addr", fmt.Sprintf("127.0.0.1:%d", imv1.DefaultAdminPort), "--timeout", "60s"},
		}}},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: new(false),
			ReadOnlyRootFilesystem:   new(true),
			RunAsNonRoot:             ptr.To(true),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

// hostArgs tells the node which host names clients reach it under, so that
// /v1/route and file URLs never echo a Host header someone else chose:
// --public-url from spec.publicURL, otherwise --allowed-hosts with the names
// of the client Service (as resolved from any namespace) and the pod's own.
func hostArgs(c *imv1.IMCluster, clusterDomain string) []string {
	if c.Spec.PublicURL != "" {
		return []string{"--public-url", c.Spec.PublicURL}
	}
	svc := clientServiceName(c)
	pod := fmt.Sprintf("$(POD_NAME).%s.%s.svc", peerServiceName(c), c.Namespace)
	hosts := []string{
		svc, svc + "." + c.Namespace, svc + "." + c.Namespace + ".svc", svc + "." + c.Namespace + ".svc." + clusterDomain,
		"$(POD_NAME)", pod, pod + "." + clusterDomain,
	}
	return []string{"--allowed-hosts", strings.Join(hosts, ",")}
}

// podAffinity is spec.scheduling.affinity, or by default a preference for one
// node pod per host.
func podAffinity(c *imv1.IMCluster) *corev1.Affinity {
	affinity := c.Spec.Scheduling.Affinity
	if affinity == nil {
		affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
				Weight: 100,
				PodAffinityTerm: corev1.PodAffinityTerm{
					TopologyKey:   corev1.LabelHostname,
					LabelSelector: &metav1.LabelSelector{MatchLabels: selectorLabels(c)},
				},
			}},
		}}
	}
	return affinity
}

func desiredStatefulSet(c *imv1.IMCluster, template corev1.PodTemplateSpec, replicas int32) *appsv1.StatefulSet {
	retention := appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	if c.Spec.Storage.ReclaimPolicy == imv1.ReclaimDelete {
		retention = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: statefulSetName(c), Namespace: c.Namespace, Labels: commonLabels(c)},
		Spec: appsv1.StatefulSetSpec{
			Replicas:    ptr.To(replicas),
			Selector:    &metav1.LabelSelector{MatchLabels: selectorLabels(c)},
			ServiceName: peerServiceName(c),
			// The operator orders scale steps itself; Parallel lets it shrink the
			// highest ordinal even when another pod is not ready.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			// The operator restarts pods one at a time behind its health gate.
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType},
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				// Deletion of the IMCluster is handled by the finalizer; scale-down
				// claims by the operator after the drain.
				WhenDeleted: retention,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
			Template: template,
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: dataVolume, Labels: selectorLabels(c)},
				Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					StorageClassName: c.Spec.Storage.StorageClassName,
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: c.StorageSize()},
					},
				},
			}},
		},
	}
}

// sortedOrdinals returns the keys of m in ascending order.
func sortedOrdinals[V any](m map[int32]V) []int32 {
	return slices.Sorted(maps.Keys(m))
}

func networkPolicyName(c *imv1.IMCluster) string { return c.Name }

// applyNetworkPolicy sets the node pods' ingress rules: gossip and the peer
// transport only from this cluster's own pods, the admin port only from the
// operator's pods and spec.security.networkPolicy.monitoringFrom, the client
// port from anywhere. Egress is not restricted.
func applyNetworkPolicy(c *imv1.IMCluster, np *networkingv1.NetworkPolicy, operatorNS string, operatorLabels map[string]string) {
	np.Labels = mergeLabels(np.Labels, commonLabels(c))
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	port := func(p corev1.Protocol, n int32) networkingv1.NetworkPolicyPort {
		return networkingv1.NetworkPolicyPort{Protocol: &p, Port: new(intstr.FromInt32(n))}
	}
	self := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: selectorLabels(c)}}
	operator := networkingv1.NetworkPolicyPeer{PodSelector: &metav1.LabelSelector{MatchLabels: maps.Clone(operatorLabels)}}
	if operatorNS != "" {
		operator.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: operatorNS}}
	} else {
		operator.NamespaceSelector = &metav1.LabelSelector{} // any namespace
	}
	np.Spec = networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{MatchLabels: selectorLabels(c)},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress: []networkingv1.NetworkPolicyIngressRule{
			{ // Clients: the WebSocket and REST port is open.
				Ports: []networkingv1.NetworkPolicyPort{port(tcp, c.ClientPort())},
			},
			{ // Gossip and the peer transport: this cluster's pods only.
				Ports: []networkingv1.NetworkPolicyPort{port(tcp, imv1.DefaultPeerPort), port(udp, imv1.DefaultPeerPort),
					port(tcp, imv1.DefaultTransportPort)},
				From: []networkingv1.NetworkPolicyPeer{self},
			},
			{ // Admin API, health and metrics: the operator and the monitoring peers.
				Ports: []networkingv1.NetworkPolicyPort{port(tcp, imv1.DefaultAdminPort)},
				From:  append([]networkingv1.NetworkPolicyPeer{operator}, c.Spec.Security.NetworkPolicy.MonitoringFrom...),
			},
		},
	}
}
