package v1

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PausedAnnotation set to "true" pauses reconciliation like spec.paused.
const PausedAnnotation = "imcluster.io/paused"

// Condition types of IMCluster.status.conditions. Every condition carries the
// observedGeneration of the spec it was computed for.
const (
	// ConditionAvailable: enough nodes are ready to accept writes at quorum.
	ConditionAvailable = "Available"
	// ConditionProgressing: the operator is moving the cluster towards the spec
	// (creating, scaling, rolling pods). False with reason Reconciled when done.
	ConditionProgressing = "Progressing"
	// ConditionDegraded: something needs attention (a pod stuck not ready, an
	// admin API that does not answer, a refused or blocked step).
	ConditionDegraded = "Degraded"
	// ConditionRebalancing: shard replicas are moving between nodes.
	ConditionRebalancing = "Rebalancing"
	// ConditionReconciliationPaused: spec.paused or the paused annotation stops all changes.
	ConditionReconciliationPaused = "ReconciliationPaused"
)

// Phase summarizes the cluster state for humans; conditions are the API.
// +kubebuilder:validation:Enum=Pending;Creating;Running;Scaling;Upgrading;Recovering;Degraded;Paused
type Phase string

// Phases.
const (
	PhasePending   Phase = "Pending"
	PhaseCreating  Phase = "Creating"
	PhaseRunning   Phase = "Running"
	PhaseScaling   Phase = "Scaling"
	PhaseUpgrading Phase = "Upgrading"
	// PhaseRecovering: a node the cluster had is down (its pod deleted,
	// evicted or restarting) and comes back on its own.
	PhaseRecovering Phase = "Recovering"
	PhaseDegraded   Phase = "Degraded"
	PhasePaused     Phase = "Paused"
)

// ReclaimPolicy says what happens to a node's volume when the node is removed.
// +kubebuilder:validation:Enum=Retain;Delete
type ReclaimPolicy string

// Reclaim policies.
const (
	// ReclaimRetain keeps PersistentVolumeClaims on scale-down and deletion.
	ReclaimRetain ReclaimPolicy = "Retain"
	// ReclaimDelete deletes the claim of a drained node and all claims on deletion.
	ReclaimDelete ReclaimPolicy = "Delete"
)

// IMClusterSpec is the desired state of a chat cluster.
// +kubebuilder:validation:XValidation:rule="self.replicationFactor <= self.replicas",message="replicationFactor must be <= replicas: raise replicas or lower replicationFactor"
// +kubebuilder:validation:XValidation:rule="self.writeQuorum <= self.replicationFactor",message="writeQuorum must be <= replicationFactor"
type IMClusterSpec struct {
	// Replicas is the number of chat nodes. The operator adds or drains one node
	// at a time. It can never go below replicationFactor.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +optional
	Replicas int32 `json:"replicas,omitempty"`

	// Version is the imnode version to run; the image is <image repository>:<version>
	// unless Image is set. Changing it rolls the pods one at a time. Empty means
	// the operator's own version (so upgrading the operator then rolls the nodes
	// too, one at a time); pin it to upgrade the nodes on your own schedule.
	// +kubebuilder:validation:MinLength=1
	// +optional
	Version string `json:"version,omitempty"`

	// Image overrides the full image reference (Version is then only reported).
	// +optional
	Image string `json:"image,omitempty"`

	// ImagePullPolicy of the imnode container.
	// +optional
	ImagePullPolicy corev1.PullPolicy `json:"imagePullPolicy,omitempty"`

	// Shards is the fixed number of shards. Set at creation; immutable.
	// +kubebuilder:default=256
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65536
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="shards is immutable: create a new cluster to change it"
	// +optional
	Shards int32 `json:"shards,omitempty"`

	// ReplicationFactor R is the number of replicas of every shard.
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +optional
	ReplicationFactor int32 `json:"replicationFactor,omitempty"`

	// WriteQuorum W is the number of replicas that must hold a message before it
	// is acknowledged.
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +optional
	WriteQuorum int32 `json:"writeQuorum,omitempty"`

	// Storage of each node.
	// +kubebuilder:default={}
	// +optional
	Storage StorageSpec `json:"storage,omitempty"`

	// Resources of the imnode container. Empty means the defaults documented in
	// docs/operator.md (requests 500m CPU and 512Mi memory, limit 2Gi memory),
	// sized from measured usage; set both requests and limits to override.
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`

	// PublicURL is the WebSocket URL the nodes hand to SDKs from /v1/route
	// (imnode --public-url), e.g. wss://chat.example.com. Set it when clients
	// reach the cluster through a load balancer or ingress under another name;
	// empty derives the URL from each request.
	// +kubebuilder:validation:XValidation:rule="self.startsWith('ws://') || self.startsWith('wss://')",message="publicURL must start with ws:// or wss://"
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	PublicURL string `json:"publicURL,omitempty"`

	// Pod adds labels, annotations and environment variables to the node pods.
	// +optional
	Pod PodSpec `json:"pod,omitempty"`

	// Security: the cluster's own credentials (a CA, one certificate per node,
	// a gossip key) and its NetworkPolicy. See docs/security.md.
	// +kubebuilder:default={}
	// +optional
	Security SecuritySpec `json:"security,omitempty"`

	// Service is the client-facing Service (the load balancer).
	// +kubebuilder:default={}
	// +optional
	Service ServiceSpec `json:"service,omitempty"`

	// AppsSecretRef names a Secret whose key apps.json lists the apps (appId,
	// appKey, masterKey). Without it, nodes start with no app.
	// +optional
	AppsSecretRef *corev1.LocalObjectReference `json:"appsSecretRef,omitempty"`

	// TLSSecretRef names a kubernetes.io/tls Secret; when set, clients connect over TLS.
	// +optional
	TLSSecretRef *corev1.LocalObjectReference `json:"tlsSecretRef,omitempty"`

	// AdminTokenSecretRef names the Secret key holding the admin API bearer
	// token. Empty means the operator creates <name>-admin-token with key token.
	// +optional
	AdminTokenSecretRef *corev1.SecretKeySelector `json:"adminTokenSecretRef,omitempty"`

	// Retention is how long messages are kept. Zero value means 4320h (180 days).
	// +optional
	Retention *metav1.Duration `json:"retention,omitempty"`

	// Scheduling of the node pods. Without affinity, pods prefer distinct hosts.
	// +optional
	Scheduling SchedulingSpec `json:"scheduling,omitempty"`

	// PodDisruptionBudget for the node pods.
	// +kubebuilder:default={}
	// +optional
	PodDisruptionBudget PDBSpec `json:"podDisruptionBudget,omitempty"`

	// Monitoring configures a Prometheus ServiceMonitor.
	// +optional
	Monitoring MonitoringSpec `json:"monitoring,omitempty"`

	// ExtraConfig is added to the node configuration file as is (key: value).
	// Changing it rolls the pods one at a time.
	// +optional
	ExtraConfig map[string]string `json:"extraConfig,omitempty"`

	// Paused stops every change to the cluster's objects; status keeps being reported.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// PodSpec customises the node pods. Changing it rolls the pods one at a time.
type PodSpec struct {
	// Labels added to the node pods. The operator's own labels
	// (app.kubernetes.io/*) win over them.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations added to the node pods. Keys under imcluster.io/ are the
	// operator's and win over them.
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
	// Env adds environment variables to the imnode container (IMNODE_<FLAG>
	// sets any imnode flag). The variables the operator sets (POD_NAME,
	// POD_NAMESPACE, IMNODE_ADMIN_TOKEN, IMNODE_CLUSTER_ID,
	// IMNODE_BOOTSTRAP_NODE) cannot be overridden.
	// +kubebuilder:validation:XValidation:rule="self.all(e, !(e.name in ['POD_NAME', 'POD_NAMESPACE', 'IMNODE_ADMIN_TOKEN', 'IMNODE_CLUSTER_ID', 'IMNODE_BOOTSTRAP_NODE']))",message="env cannot set POD_NAME, POD_NAMESPACE, IMNODE_ADMIN_TOKEN, IMNODE_CLUSTER_ID or IMNODE_BOOTSTRAP_NODE: the operator sets them"
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
}

// SecuritySpec configures the credentials the operator issues and the
// NetworkPolicy it renders.
type SecuritySpec struct {
	// NetworkPolicy restricts who reaches the node ports.
	// +kubebuilder:default={}
	// +optional
	NetworkPolicy NetworkPolicySpec `json:"networkPolicy,omitempty"`

	// CertificateLifetime of the node certificates. The operator renews a
	// certificate at two thirds of its lifetime; nodes reload it without a
	// restart. Zero value means 2160h (90 days).
	// +optional
	CertificateLifetime *metav1.Duration `json:"certificateLifetime,omitempty"`

	// CALifetime of the cluster CA. The operator rotates the CA (trust the new
	// one, reissue the node certificates, drop the old one) at two thirds of
	// its lifetime. Zero value means 87600h (10 years).
	// +optional
	CALifetime *metav1.Duration `json:"caLifetime,omitempty"`

	// CARotation: raise it to rotate the cluster CA now. status.security
	// reports the last rotation done.
	// +kubebuilder:validation:Minimum=0
	// +optional
	CARotation int64 `json:"caRotation,omitempty"`

	// GossipKeyRotation: raise it to rotate the gossip encryption key (install
	// the new key, make it primary, remove the old one, each step once every
	// node reports it). status.security reports the last rotation done.
	// +kubebuilder:validation:Minimum=0
	// +optional
	GossipKeyRotation int64 `json:"gossipKeyRotation,omitempty"`
}

// NetworkPolicySpec is the NetworkPolicy of the node pods: gossip and peer
// transport only between the cluster's own pods, the admin port only from the
// operator and the monitoring peers, the client port open.
type NetworkPolicySpec struct {
	// Enabled renders the NetworkPolicy. Zero value means enabled.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// MonitoringFrom are the peers (besides the operator) allowed to reach the
	// admin port, which serves /metrics: typically your Prometheus, e.g.
	// {namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}},
	// podSelector: {matchLabels: {app.kubernetes.io/name: prometheus}}}.
	// +kubebuilder:validation:MaxItems=16
	// +optional
	MonitoringFrom []networkingv1.NetworkPolicyPeer `json:"monitoringFrom,omitempty"`
}

// StorageSpec is the volume of each node.
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.size) || !has(self.size) || quantity(string(self.size)).compareTo(quantity(string(oldSelf.size))) >= 0",message="storage.size can only grow"
// +kubebuilder:validation:XValidation:rule="has(self.storageClassName) == has(oldSelf.storageClassName) && (!has(self.storageClassName) || self.storageClassName == oldSelf.storageClassName)",message="storage.storageClassName is immutable"
type StorageSpec struct {
	// StorageClassName of the claims; empty uses the cluster default.
	// +optional
	StorageClassName *string `json:"storageClassName,omitempty"`

	// Size of each node's volume. It can grow (claims are expanded in place)
	// but never shrink.
	// +kubebuilder:default="10Gi"
	// +optional
	Size *resource.Quantity `json:"size,omitempty"`

	// ReclaimPolicy: Retain (default) keeps claims on scale-down and deletion;
	// Delete removes a drained node's claim and all claims on deletion.
	// +kubebuilder:default=Retain
	// +optional
	ReclaimPolicy ReclaimPolicy `json:"reclaimPolicy,omitempty"`
}

// ServiceSpec is the client Service.
type ServiceSpec struct {
	// Type of the client Service.
	// +kubebuilder:validation:Enum=ClusterIP;NodePort;LoadBalancer
	// +kubebuilder:default=ClusterIP
	// +optional
	Type corev1.ServiceType `json:"type,omitempty"`

	// Annotations added to the client Service (for cloud load balancers).
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// ClientPort serves WebSocket and REST. Zero value means 8080.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	ClientPort int32 `json:"clientPort,omitempty"`

	// NodePort for type NodePort or LoadBalancer; zero lets Kubernetes choose.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=65535
	// +optional
	NodePort int32 `json:"nodePort,omitempty"`

	// LoadBalancerSourceRanges restricts client CIDRs for type LoadBalancer.
	// +optional
	LoadBalancerSourceRanges []string `json:"loadBalancerSourceRanges,omitempty"`
}

// SchedulingSpec places the node pods.
type SchedulingSpec struct {
	// Affinity replaces the default (preferred anti-affinity on hostname).
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// TopologySpreadConstraints of the node pods.
	// +optional
	TopologySpreadConstraints []corev1.TopologySpreadConstraint `json:"topologySpreadConstraints,omitempty"`
	// Tolerations of the node pods.
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// NodeSelector of the node pods.
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	// PriorityClassName of the node pods.
	// +optional
	PriorityClassName string `json:"priorityClassName,omitempty"`
}

// PDBSpec is the PodDisruptionBudget.
type PDBSpec struct {
	// Enabled creates the budget. Zero value means enabled.
	// +kubebuilder:default=true
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// MaxUnavailable node pods during voluntary disruptions. Zero value means 1.
	// +optional
	MaxUnavailable *intstr.IntOrString `json:"maxUnavailable,omitempty"`
}

// MonitoringSpec configures Prometheus scraping.
type MonitoringSpec struct {
	// ServiceMonitor creates a monitoring.coreos.com/v1 ServiceMonitor when that
	// CRD is installed; otherwise a condition says why none was made.
	// +optional
	ServiceMonitor bool `json:"serviceMonitor,omitempty"`
	// PrometheusRule creates a monitoring.coreos.com/v1 PrometheusRule with the
	// alerting rules of docs/monitoring.md, scoped to this cluster, when that
	// CRD is installed; otherwise a condition says why none was made.
	// +optional
	PrometheusRule bool `json:"prometheusRule,omitempty"`
	// Labels added to the ServiceMonitor and the PrometheusRule (for the
	// Prometheus selectors).
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Interval between scrapes. Zero value means 30s.
	// +optional
	Interval string `json:"interval,omitempty"`
}

// IMClusterStatus is the observed state, recomputed from the world on every reconcile.
type IMClusterStatus struct {
	// Phase is a one-word summary; use conditions for automation.
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// Conditions: Available, Progressing, Degraded, Rebalancing, ReconciliationPaused.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ObservedGeneration is the generation the status was computed for.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Replicas is the number of node pods that exist.
	// +optional
	Replicas int32 `json:"replicas"`
	// ReadyReplicas is the number of ready node pods.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// UpdatedReplicas is the number of pods on the current template.
	// +optional
	UpdatedReplicas int32 `json:"updatedReplicas"`
	// Selector is the label selector of the node pods (for the scale subresource).
	// +optional
	Selector string `json:"selector,omitempty"`
	// CurrentVersion is the version every pod runs, empty while they differ.
	// +optional
	CurrentVersion string `json:"currentVersion,omitempty"`
	// Members are the nodes, by ordinal.
	// +optional
	Members []MemberStatus `json:"members,omitempty"`
	// Shards summarizes shard health as reported by the nodes.
	// +optional
	Shards ShardsStatus `json:"shards,omitempty"`
	// Security reports the credentials the operator issued.
	// +optional
	Security SecurityStatus `json:"security,omitempty"`
	// CurrentOperation is the step in flight, if any (informational: the
	// operator re-derives it from the StatefulSet and the nodes every time).
	// +optional
	CurrentOperation *Operation `json:"currentOperation,omitempty"`
}

// MemberStatus is one node.
type MemberStatus struct {
	// Pod is the pod name.
	Pod string `json:"pod"`
	// NodeID is the node's stable id (equal to the pod name).
	NodeID string `json:"nodeID"`
	// State is the node's lifecycle state (joining, active, draining, left) or
	// unknown when its admin API did not answer.
	// +optional
	State string `json:"state,omitempty"`
	// Shards is the number of shard replicas on the node.
	// +optional
	Shards int32 `json:"shards"`
	// Ready mirrors the pod's Ready condition.
	// +optional
	Ready bool `json:"ready"`
	// Version is the version the node reports.
	// +optional
	Version string `json:"version,omitempty"`
}

// ShardsStatus summarizes shards.
type ShardsStatus struct {
	// Total is the shard count.
	// +optional
	Total int32 `json:"total"`
	// UnderReplicated counts shards missing a replica or catching up.
	// +optional
	UnderReplicated int32 `json:"underReplicated"`
	// Moving counts shard replicas in flight.
	// +optional
	Moving int32 `json:"moving"`
}

// SecurityStatus reports the cluster's credentials.
type SecurityStatus struct {
	// CANotAfter is the expiry of the CA that signs the node certificates.
	// +optional
	CANotAfter *metav1.Time `json:"caNotAfter,omitempty"`
	// CertificatesNotAfter is the earliest expiry among the node certificates.
	// +optional
	CertificatesNotAfter *metav1.Time `json:"certificatesNotAfter,omitempty"`
	// CARotation is the last spec.security.caRotation fully applied.
	// +optional
	CARotation int64 `json:"caRotation,omitempty"`
	// GossipKeyRotation is the last spec.security.gossipKeyRotation fully applied.
	// +optional
	GossipKeyRotation int64 `json:"gossipKeyRotation,omitempty"`
	// Rotation says which credential rotation step is in flight, if any.
	// +optional
	Rotation string `json:"rotation,omitempty"`
}

// OperationType names a multi-step operation.
type OperationType string

// Operations.
const (
	OperationScaleUp   OperationType = "ScaleUp"
	OperationScaleDown OperationType = "ScaleDown"
	OperationUpgrade   OperationType = "RollingUpdate"
)

// Operation is the step in flight.
type Operation struct {
	// Type of the operation.
	Type OperationType `json:"type"`
	// Pod the step acts on.
	// +optional
	Pod string `json:"pod,omitempty"`
	// Message says what the operator waits for.
	// +optional
	Message string `json:"message,omitempty"`
	// StartedAt is when the operator began this operation (this type on
	// this pod); it survives operator restarts. The operator exports it as
	// imcluster_operator_operation_started_timestamp_seconds.
	// +optional
	StartedAt *metav1.Time `json:"startedAt,omitempty"`
}

// IMCluster is a sharded LeanCloud-realtime-compatible chat cluster.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:subresource:scale:specpath=.spec.replicas,statuspath=.status.replicas,selectorpath=.status.selector
// +kubebuilder:resource:shortName=imc,categories=all
// +kubebuilder:printcolumn:name="Replicas",type=integer,JSONPath=`.spec.replicas`
// +kubebuilder:printcolumn:name="Ready",type=integer,JSONPath=`.status.readyReplicas`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.status.currentVersion`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Under-Replicated",type=integer,JSONPath=`.status.shards.underReplicated`,priority=1
// +kubebuilder:printcolumn:name="Available",type=string,JSONPath=`.status.conditions[?(@.type=="Available")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type IMCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec IMClusterSpec `json:"spec,omitempty"`
	// +optional
	Status IMClusterStatus `json:"status,omitempty"`
}

// IMClusterList is a list of IMCluster.
// +kubebuilder:object:root=true
type IMClusterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []IMCluster `json:"items"`
}
