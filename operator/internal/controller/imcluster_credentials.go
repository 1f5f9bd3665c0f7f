package controller

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/pki"
)

// Cluster credentials (docs/security.md, docs/operator.md "Credentials"):
//
//   - Secret <name>-ca, never mounted: the signing CA (ca.crt, ca.key) and
//     the trust bundle (trust.crt: the signing CA first, during a CA rotation
//     followed by the previous one).
//   - Secret <name>-peer-tls, mounted at /etc/imnode/peer: ca.crt (the trust
//     bundle) and <pod>.crt/<pod>.key for every ordinal the StatefulSet has
//     or is about to have. A StatefulSet mounts one Secret into every pod, so
//     each pod can read every node's key: the boundary the certificates draw
//     is the cluster, not one node of it.
//   - Secret <name>-gossip, mounted at /etc/imnode/gossip: keyring, one
//     base64 AES-256 key per line, the first one primary.
//
// Nodes re-read the files when the kubelet updates the mounted Secrets; the
// operator observes what they loaded through GET /admin/v1/node (peerCAs,
// peerCertNotAfter, gossipKeys) before each rotation step.
const (
	peerDir        = "/etc/imnode/peer"
	gossipDir      = "/etc/imnode/gossip"
	caCertKey      = "ca.crt"
	caKeyKey       = "ca.key"
	trustKey       = "trust.crt"
	keyringKey     = "keyring"
	peerVolume     = "peer-tls"
	gossipVolume   = "gossip"
	credentialMode = 0o440 // root:65532 (fsGroup), readable by the node only

	// AnnotationCARotation on the CA Secret is the spec.security.caRotation
	// the signing CA was made for.
	AnnotationCARotation = "imcluster.io/ca-rotation"
	// AnnotationGossipKeyRotation on the gossip Secret is the
	// spec.security.gossipKeyRotation the keyring is at or moving to.
	AnnotationGossipKeyRotation = "imcluster.io/gossip-key-rotation"
	// AnnotationGossipKeyStep on the gossip Secret is the rotation step in
	// flight: "installed" (new key second), "primary" (new key first), or
	// absent (one key).
	AnnotationGossipKeyStep = "imcluster.io/gossip-key-step"
)

func caSecretName(c *imv1.IMCluster) string     { return c.Name + "-ca" }
func peerSecretName(c *imv1.IMCluster) string   { return c.Name + "-peer-tls" }
func gossipSecretName(c *imv1.IMCluster) string { return c.Name + "-gossip" }
func certKey(pod string) string                 { return pod + ".crt" }
func keyKey(pod string) string                  { return pod + ".key" }
func renewAt(notBefore, notAfter time.Time) time.Time {
	return notBefore.Add(notAfter.Sub(notBefore) * 2 / 3)
}

// fingerprint is a certificate's or key's short fingerprint as the nodes
// report it: the first 8 bytes of the SHA-256, in hex.
func fingerprint(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// credentialArgs are the imnode flags naming the mounted credentials.
func credentialArgs() []string {
	return []string{
		"--peer-ca-file", peerDir + "/" + caCertKey,
		"--peer-cert-file", peerDir + "/$(POD_NAME).crt",
		"--peer-key-file", peerDir + "/$(POD_NAME).key",
		"--gossip-keyring-file", gossipDir + "/" + keyringKey,
	}
}

func credentialVolumes(c *imv1.IMCluster) ([]corev1.VolumeMount, []corev1.Volume) {
	mounts := []corev1.VolumeMount{
		{Name: peerVolume, MountPath: peerDir, ReadOnly: true},
		{Name: gossipVolume, MountPath: gossipDir, ReadOnly: true},
	}
	volumes := []corev1.Volume{
		{Name: peerVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: peerSecretName(c), DefaultMode: ptr.To[int32](credentialMode)}}},
		{Name: gossipVolume, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: gossipSecretName(c), DefaultMode: ptr.To[int32](credentialMode)}}},
	}
	return mounts, volumes
}

// credentials is what reconcileCredentials loaded, for the rotation phase.
type credentials struct {
	caSecret, peerSecret, gossipSecret *corev1.Secret
	signing                            *pki.CA
	trust                              []*x509.Certificate
}

func (r *IMClusterReconciler) now() time.Time {
	if r.Config.Now != nil {
		return r.Config.Now()
	}
	return time.Now()
}

// getOrCreateSecret returns the Secret name, creating it owned by c with
// data from mk when it does not exist.
func (r *IMClusterReconciler) getOrCreateSecret(ctx context.Context, c *imv1.IMCluster, name string,
	mk func() (map[string][]byte, map[string]string, error)) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, s)
	if err == nil {
		return s, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, err
	}
	data, annotations, err := mk()
	if err != nil {
		return nil, err
	}
	s = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace, Labels: commonLabels(c),
		Annotations: annotations}, Data: data}
	if err := controllerutil.SetControllerReference(c, s, r.Scheme()); err != nil {
		return nil, err
	}
	if err := r.Create(ctx, s); err != nil {
		return nil, fmt.Errorf("create secret %s: %w", name, err)
	}
	r.event(c, corev1.EventTypeNormal, "CredentialsCreated", "Create", "Created Secret %s", name)
	return s, nil
}

func newGossipKey() string {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails
	return base64.StdEncoding.EncodeToString(k)
}

func keyringLines(s *corev1.Secret) []string {
	return strings.Fields(string(s.Data[keyringKey]))
}

func keyringFingerprints(lines []string) ([]string, error) {
	out := make([]string, len(lines))
	for i, l := range lines {
		k, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			return nil, fmt.Errorf("gossip keyring line %d: %w", i+1, err)
		}
		out[i] = membership.KeyFingerprint(k)
	}
	return out, nil
}

// reconcileCredentials makes sure the CA, the gossip keyring and a current
// certificate for every ordinal exist before any pod needs them, and renews
// node certificates at two thirds of their lifetime.
func (r *IMClusterReconciler) reconcileCredentials(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	now := r.now()
	caSecret, err := r.getOrCreateSecret(ctx, c, caSecretName(c), func() (map[string][]byte, map[string]string, error) {
		ca, err := pki.NewCA(c.Name+" imcluster CA", c.CALifetime())
		if err != nil {
			return nil, nil, err
		}
		key, err := ca.KeyPEM()
		if err != nil {
			return nil, nil, err
		}
		return map[string][]byte{caCertKey: ca.CertPEM(), caKeyKey: key, trustKey: ca.CertPEM()},
			map[string]string{AnnotationCARotation: strconv.FormatInt(c.Spec.Security.CARotation, 10)}, nil
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	signing, err := pki.ParseCA(caSecret.Data[caCertKey], caSecret.Data[caKeyKey])
	if err != nil {
		s.degrade("CredentialsInvalid", "Secret %s: %v", caSecret.Name, err)
		s.stop = true
		return ctrl.Result{}, nil
	}
	trust, err := pki.ParseCertificates(caSecret.Data[trustKey])
	if err != nil || len(trust) == 0 {
		s.degrade("CredentialsInvalid", "Secret %s: trust.crt: %v", caSecret.Name, err)
		s.stop = true
		return ctrl.Result{}, nil
	}
	gossip, err := r.getOrCreateSecret(ctx, c, gossipSecretName(c), func() (map[string][]byte, map[string]string, error) {
		return map[string][]byte{keyringKey: []byte(newGossipKey() + "\n")},
			map[string]string{AnnotationGossipKeyRotation: strconv.FormatInt(c.Spec.Security.GossipKeyRotation, 10)}, nil
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	if _, err := keyringFingerprints(keyringLines(gossip)); err != nil || len(keyringLines(gossip)) == 0 {
		s.degrade("CredentialsInvalid", "Secret %s: keyring: %v", gossip.Name, err)
		s.stop = true
		return ctrl.Result{}, nil
	}

	// Node certificates for every ordinal the StatefulSet has or will get next.
	// (observe has not run yet: read the StatefulSet here; during a
	// scale-down it still has the draining ordinals.)
	n := c.Spec.Replicas
	sts := &appsv1.StatefulSet{}
	switch err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: statefulSetName(c)}, sts); {
	case err == nil:
		n = max(n, ptr.Deref(sts.Spec.Replicas, 0))
	case !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	}
	peer := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: peerSecretName(c), Namespace: c.Namespace}}
	// Reissuing under a new CA waits until every node trusts it (rotation
	// step "trust" done, see advanceCARotation).
	reissueForCA := caSecret.Annotations[annotationCAStep] == caStepReissue || len(trust) == 1
	var earliest time.Time
	var issued []string
	if _, err := controllerutil.CreateOrUpdate(ctx, r.Client, peer, func() error {
		peer.Labels = mergeLabels(peer.Labels, commonLabels(c))
		if peer.Data == nil {
			peer.Data = map[string][]byte{}
		}
		peer.Data[caCertKey] = caSecret.Data[trustKey]
		want := map[string]bool{caCertKey: true}
		for o := range n {
			pod := podName(c, o)
			want[certKey(pod)], want[keyKey(pod)] = true, true
			cert := leaf(peer.Data[certKey(pod)])
			switch {
			case cert == nil, cert.Subject.CommonName != pod, !now.Before(renewAt(cert.NotBefore, cert.NotAfter)),
				reissueForCA && cert.CheckSignatureFrom(signing.Cert) != nil:
				certPEM, keyPEM, err := signing.IssueNode(pod, pki.NodeOptions{
					DNSNames: podDNSNames(c, pod, r.clusterDomain()), Validity: c.CertificateLifetime()})
				if err != nil {
					return err
				}
				// Nodes report only their certificate's NotAfter (whole
				// seconds): a replacement issued within the second of the one
				// it replaces must still be told apart.
				if prev := cert; prev != nil && leaf(certPEM).NotAfter.Equal(prev.NotAfter) {
					certPEM, keyPEM, err = signing.IssueNode(pod, pki.NodeOptions{
						DNSNames: podDNSNames(c, pod, r.clusterDomain()), Validity: c.CertificateLifetime() + time.Second})
					if err != nil {
						return err
					}
				}
				peer.Data[certKey(pod)], peer.Data[keyKey(pod)] = certPEM, keyPEM
				issued = append(issued, pod)
				cert = leaf(certPEM)
			}
			if at := renewAt(cert.NotBefore, cert.NotAfter); earliest.IsZero() || at.Before(earliest) {
				earliest = at
			}
		}
		for k := range peer.Data {
			if !want[k] {
				delete(peer.Data, k) // ordinals the cluster no longer has
			}
		}
		return controllerutil.SetControllerReference(c, peer, r.Scheme())
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("reconcile peer tls secret: %w", err)
	}
	if len(issued) > 0 {
		r.event(c, corev1.EventTypeNormal, "CertificatesIssued", "Certificates",
			"Issued peer certificates for %s (valid %s)", strings.Join(issued, ", "), c.CertificateLifetime())
	}
	s.creds = &credentials{caSecret: caSecret, peerSecret: peer, gossipSecret: gossip, signing: signing, trust: trust}
	s.status.CANotAfter = &metav1.Time{Time: signing.Cert.NotAfter}
	minNotAfter := time.Time{}
	for o := range n {
		if cert := leaf(peer.Data[certKey(podName(c, o))]); cert != nil && (minNotAfter.IsZero() || cert.NotAfter.Before(minNotAfter)) {
			minNotAfter = cert.NotAfter
		}
	}
	if !minNotAfter.IsZero() {
		s.status.CertificatesNotAfter = &metav1.Time{Time: minNotAfter}
	}
	res := ctrl.Result{}
	if !earliest.IsZero() {
		res.RequeueAfter = max(earliest.Sub(now), time.Second)
	}
	return res, nil
}

func podDNSNames(c *imv1.IMCluster, pod, clusterDomain string) []string {
	host := fmt.Sprintf("%s.%s.%s.svc", pod, peerServiceName(c), c.Namespace)
	return []string{pod, host, host + "." + clusterDomain}
}

// leaf parses the first certificate of pemData, or nil.
func leaf(pemData []byte) *x509.Certificate {
	certs, err := pki.ParseCertificates(pemData)
	if err != nil || len(certs) == 0 {
		return nil
	}
	return certs[0]
}

// CA rotation steps, recorded in the CA Secret's annotation.
const (
	annotationCAStep = "imcluster.io/ca-rotation-step"
	// caStepTrust: the new CA signs and is trusted beside the old one; wait
	// until every node trusts both.
	caStepTrust = "trust"
	// caStepReissue: node certificates are reissued by the new CA; wait until
	// every node serves its new certificate, then drop the old CA.
	caStepReissue = "reissue"
)

// reconcileRotation advances the CA and gossip key rotations by at most one
// step each, only when every node reports the state the previous step set.
// It runs after observe.
func (r *IMClusterReconciler) reconcileRotation(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.creds == nil {
		return ctrl.Result{}, nil
	}
	if err := r.advanceCARotation(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.advanceGossipRotation(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// nodesReport returns "" when every running pod's node reports what ok
// accepts, or what it waits for.
func nodesReport(s *scope, what string, ok func(o int32) bool) string {
	for _, o := range sortedOrdinals(s.pods) {
		p := s.pods[o]
		if p.DeletionTimestamp != nil {
			continue
		}
		if s.nodes[o] == nil {
			return fmt.Sprintf("waiting for the admin API of %s (%s)", p.Name, what)
		}
		if !ok(o) {
			return fmt.Sprintf("waiting for %s to report %s", p.Name, what)
		}
	}
	return ""
}

func (r *IMClusterReconciler) advanceCARotation(ctx context.Context, s *scope) error {
	c := s.cluster
	cr := s.creds
	done, _ := strconv.ParseInt(cr.caSecret.Annotations[AnnotationCARotation], 10, 64)
	s.status.CARotation = done
	step := cr.caSecret.Annotations[annotationCAStep]
	now := r.now()
	due := c.Spec.Security.CARotation > done || !now.Before(renewAt(cr.signing.Cert.NotBefore, cr.signing.Cert.NotAfter))
	trustFPs := make([]string, len(cr.trust))
	for i, t := range cr.trust {
		trustFPs[i] = fingerprint(t.Raw)
	}
	patchCA := func(mutate func(sec *corev1.Secret)) error {
		patch := client.MergeFrom(cr.caSecret.DeepCopy())
		mutate(cr.caSecret)
		return r.Patch(ctx, cr.caSecret, patch)
	}
	switch step {
	case "":
		if !due {
			return nil
		}
		ca, err := pki.NewCA(c.Name+" imcluster CA", c.CALifetime())
		if err != nil {
			return err
		}
		key, err := ca.KeyPEM()
		if err != nil {
			return err
		}
		if err := patchCA(func(sec *corev1.Secret) {
			sec.Data[caCertKey], sec.Data[caKeyKey] = ca.CertPEM(), key
			sec.Data[trustKey] = append(ca.CertPEM(), cr.caSecret.Data[trustKey]...)
			sec.Annotations[annotationCAStep] = caStepTrust
		}); err != nil {
			return fmt.Errorf("start CA rotation: %w", err)
		}
		s.status.Rotation = "CA: trusting the new CA beside the old one"
		r.event(c, corev1.EventTypeNormal, "CARotationStarted", "RotateCA", "New cluster CA trusted beside the old one")
	case caStepTrust:
		if msg := nodesReport(s, "both CAs", func(o int32) bool { return slices.Equal(s.nodes[o].PeerCAs, trustFPs) }); msg != "" {
			s.status.Rotation = "CA: " + msg
			s.progress("RotatingCredentials", "CA rotation: %s", msg)
			return nil
		}
		if err := patchCA(func(sec *corev1.Secret) { sec.Annotations[annotationCAStep] = caStepReissue }); err != nil {
			return err
		}
		s.status.Rotation = "CA: reissuing node certificates"
		r.event(c, corev1.EventTypeNormal, "CARotationReissue", "RotateCA", "Every node trusts the new CA: reissuing node certificates")
	case caStepReissue:
		msg := nodesReport(s, "its certificate from the new CA", func(o int32) bool {
			cert := leaf(cr.peerSecret.Data[certKey(podName(c, o))])
			return cert != nil && cert.CheckSignatureFrom(cr.signing.Cert) == nil && s.nodes[o].PeerCertNotAfter.Equal(cert.NotAfter)
		})
		if msg != "" {
			s.status.Rotation = "CA: " + msg
			s.progress("RotatingCredentials", "CA rotation: %s", msg)
			return nil
		}
		target := max(c.Spec.Security.CARotation, done)
		if err := patchCA(func(sec *corev1.Secret) {
			sec.Data[trustKey] = cr.signing.CertPEM()
			delete(sec.Annotations, annotationCAStep)
			sec.Annotations[AnnotationCARotation] = strconv.FormatInt(target, 10)
		}); err != nil {
			return err
		}
		s.status.CARotation = target
		r.event(c, corev1.EventTypeNormal, "CARotated", "RotateCA", "Every node serves a certificate of the new CA: the old CA is no longer trusted")
	}
	return nil
}

func (r *IMClusterReconciler) advanceGossipRotation(ctx context.Context, s *scope) error {
	c := s.cluster
	g := s.creds.gossipSecret
	target, _ := strconv.ParseInt(g.Annotations[AnnotationGossipKeyRotation], 10, 64)
	lines := keyringLines(g)
	fps, err := keyringFingerprints(lines)
	if err != nil {
		return nil // reported by reconcileCredentials
	}
	step := g.Annotations[AnnotationGossipKeyStep]
	s.status.GossipKeyRotation = s.before.Status.Security.GossipKeyRotation
	if step == "" {
		s.status.GossipKeyRotation = target
		if c.Spec.Security.GossipKeyRotation <= target {
			return nil // no rotation asked for
		}
	}
	if msg := nodesReport(s, "gossip keys "+strings.Join(fps, ","), func(o int32) bool {
		return slices.Equal(s.nodes[o].GossipKeys, fps)
	}); msg != "" {
		s.status.Rotation = "gossip key: " + msg
		s.progress("RotatingCredentials", "Gossip key rotation: %s", msg)
		return nil
	}
	patch := client.MergeFrom(g.DeepCopy())
	if g.Annotations == nil {
		g.Annotations = map[string]string{}
	}
	var note string
	switch {
	case step == "" && len(lines) == 1: // every node has the one key: install a new one
		g.Data[keyringKey] = []byte(lines[0] + "\n" + newGossipKey() + "\n")
		g.Annotations[AnnotationGossipKeyStep] = "installed"
		g.Annotations[AnnotationGossipKeyRotation] = strconv.FormatInt(c.Spec.Security.GossipKeyRotation, 10)
		note = "installed a new gossip key beside the primary one"
	case step == "installed" && len(lines) == 2: // every node has both: make the new one primary
		g.Data[keyringKey] = []byte(lines[1] + "\n" + lines[0] + "\n")
		g.Annotations[AnnotationGossipKeyStep] = "primary"
		note = "the new gossip key is primary"
	case step == "primary" && len(lines) == 2: // every node encrypts with the new one: remove the old
		g.Data[keyringKey] = []byte(lines[0] + "\n")
		delete(g.Annotations, AnnotationGossipKeyStep)
		note = "removed the old gossip key"
	default:
		s.degrade("CredentialsInvalid", "Secret %s: keyring of %d keys at rotation step %q", g.Name, len(lines), step)
		return nil
	}
	if err := r.Patch(ctx, g, patch); err != nil {
		return fmt.Errorf("gossip key rotation: %w", err)
	}
	s.status.Rotation = "gossip key: " + note
	s.progress("RotatingCredentials", "Gossip key rotation: %s", note)
	r.event(c, corev1.EventTypeNormal, "GossipKeyRotation", "RotateGossipKey", "Every node reported the keyring: %s", note)
	return nil
}
