package v1

import (
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Defaults for fields whose zero value is documented as "means X". The CRD
// defaults the others at admission.
const (
	DefaultClientPort = 8080
	// DefaultAdminPort serves /healthz, /readyz, /metrics and /admin/v1.
	DefaultAdminPort = 8081
	// DefaultPeerPort carries the nodes' gossip (memberlist: failure detection
	// and each node's state record), over both TCP and UDP.
	DefaultPeerPort = 7946
	// DefaultTransportPort carries the peer data transport between nodes
	// (request forwarding, replication, shard streaming), TCP. imnode's
	// --transport-addr defaults to the peer port + 1.
	DefaultTransportPort = DefaultPeerPort + 1
	// DefaultRetention is 180 days.
	DefaultRetention = 180 * 24 * time.Hour
	// DefaultStorageSize is the volume of a node when spec.storage.size is unset.
	DefaultStorageSize = "10Gi"
	// DefaultImageRepository is used with spec.version when spec.image is empty.
	DefaultImageRepository = "imcluster/imnode"
)

// StorageSize returns spec.storage.size, defaulted.
func (c *IMCluster) StorageSize() resource.Quantity {
	if c.Spec.Storage.Size == nil || c.Spec.Storage.Size.IsZero() {
		return resource.MustParse(DefaultStorageSize)
	}
	return *c.Spec.Storage.Size
}

// IsPaused reports whether reconciliation is paused by spec or annotation.
func (c *IMCluster) IsPaused() bool {
	return c.Spec.Paused || c.Annotations[PausedAnnotation] == "true"
}

// ImageRef returns the image the nodes run; operatorVersion stands in for an
// empty spec.version.
func (c *IMCluster) ImageRef(operatorVersion string) string {
	if c.Spec.Image != "" {
		return c.Spec.Image
	}
	return DefaultImageRepository + ":" + c.EffectiveVersion(operatorVersion)
}

// ClientPort returns the client port, defaulted.
func (c *IMCluster) ClientPort() int32 {
	if c.Spec.Service.ClientPort == 0 {
		return DefaultClientPort
	}
	return c.Spec.Service.ClientPort
}

// RetentionDuration returns the message retention, defaulted.
func (c *IMCluster) RetentionDuration() metav1.Duration {
	if c.Spec.Retention == nil || c.Spec.Retention.Duration == 0 {
		return metav1.Duration{Duration: DefaultRetention}
	}
	return *c.Spec.Retention
}

// Credential defaults.
const (
	// DefaultCertificateLifetime of node certificates (90 days).
	DefaultCertificateLifetime = 90 * 24 * time.Hour
	// DefaultCALifetime of the cluster CA (10 years).
	DefaultCALifetime = 10 * 365 * 24 * time.Hour
)

// EffectiveVersion returns spec.version, or operatorVersion when it is empty.
func (c *IMCluster) EffectiveVersion(operatorVersion string) string {
	if c.Spec.Version != "" {
		return c.Spec.Version
	}
	return operatorVersion
}

// CertificateLifetime returns spec.security.certificateLifetime, defaulted.
func (c *IMCluster) CertificateLifetime() time.Duration {
	if d := c.Spec.Security.CertificateLifetime; d != nil && d.Duration > 0 {
		return d.Duration
	}
	return DefaultCertificateLifetime
}

// CALifetime returns spec.security.caLifetime, defaulted.
func (c *IMCluster) CALifetime() time.Duration {
	if d := c.Spec.Security.CALifetime; d != nil && d.Duration > 0 {
		return d.Duration
	}
	return DefaultCALifetime
}

// NetworkPolicyEnabled reports whether the NetworkPolicy is rendered.
func (c *IMCluster) NetworkPolicyEnabled() bool {
	en := c.Spec.Security.NetworkPolicy.Enabled
	return en == nil || *en
}
