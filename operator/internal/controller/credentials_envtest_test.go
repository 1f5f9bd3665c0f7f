//go:build envtest

package controller

import (
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
	"github.com/imcluster/imcluster/node/membership"
	"github.com/imcluster/imcluster/node/pki"
)

func (e *env) secret(name string) *corev1.Secret {
	e.t.Helper()
	s := &corev1.Secret{}
	if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, s); err != nil {
		e.t.Fatalf("get Secret %s: %v", name, err)
	}
	return s
}

// syncCreds plays the kubelet and the nodes: every running node loads the
// mounted Secrets as they are now and reports them on its admin API.
func (e *env) syncCreds(name string) {
	e.t.Helper()
	peer, gossip := e.secret(name+"-peer-tls"), e.secret(name+"-gossip")
	var keys []string
	for l := range strings.FieldsSeq(string(gossip.Data["keyring"])) {
		k, err := base64.StdEncoding.DecodeString(l)
		if err != nil {
			e.t.Fatalf("keyring: %v", err)
		}
		keys = append(keys, membership.KeyFingerprint(k))
	}
	cas, err := pki.ParseCertificates(peer.Data["ca.crt"])
	if err != nil {
		e.t.Fatal(err)
	}
	var caFPs []string
	for _, ca := range cas {
		caFPs = append(caFPs, fingerprint(ca.Raw))
	}
	for o := range e.stsReplicas(name) {
		pod := fmt.Sprintf("%s-%d", name, o)
		e.nodes.setCreds(pod, keys, caFPs, leaf(peer.Data[pod+".crt"]).NotAfter)
	}
}

// verifyPeerCerts checks every pod's certificate against the mounted trust
// bundle as a peer would, and returns the certificates by pod.
func verifyPeerCerts(t *testing.T, peer *corev1.Secret, pods []string, now time.Time) map[string]*x509.Certificate {
	t.Helper()
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(peer.Data["ca.crt"]) {
		t.Fatalf("ca.crt holds no certificate")
	}
	out := map[string]*x509.Certificate{}
	for _, pod := range pods {
		certs, err := pki.ParseCertificates(peer.Data[pod+".crt"])
		if err != nil || len(certs) != 1 {
			t.Fatalf("%s.crt: %v", pod, err)
		}
		if _, err := pki.ParseKey(peer.Data[pod+".key"]); err != nil {
			t.Fatalf("%s.key: %v", pod, err)
		}
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			id, err := pki.Verify(certs, roots, usage, now)
			if err != nil || id != pod {
				t.Fatalf("%s certificate: node id %q, %v", pod, id, err)
			}
		}
		out[pod] = certs[0]
	}
	return out
}

// TestOperatorCredentials: the CA, per-pod certificates and the gossip key in
// owned Secrets; the pods mount the peer and gossip Secrets (never the CA
// key) and name them in flags; certificates are renewed at 2/3 of their
// lifetime; scale-up issues the next pod's certificate before the pod exists.
func TestOperatorCredentials(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.r.Config.Now = func() time.Time { return now }
	e.create(e.cluster("cred", 3, func(c *imv1.IMCluster) {
		c.Spec.Security.CertificateLifetime = &metav1.Duration{Duration: 90 * time.Hour}
	}))
	e.reconcile("cred")

	for _, name := range []string{"cred-ca", "cred-peer-tls", "cred-gossip"} {
		s := e.secret(name)
		if refs := s.OwnerReferences; len(refs) != 1 || refs[0].Kind != "IMCluster" || refs[0].Name != "cred" {
			t.Fatalf("Secret %s owner references %+v", name, refs)
		}
	}
	peer := e.secret("cred-peer-tls")
	pods := []string{"cred-0", "cred-1", "cred-2"}
	certs := verifyPeerCerts(t, peer, pods, now)
	if got := certs["cred-0"].NotAfter.Sub(now); got < 89*time.Hour || got > 91*time.Hour {
		t.Fatalf("certificate lifetime %s, want 90h", got)
	}
	if _, ok := peer.Data["cred-0.key"]; !ok || len(peer.Data) != 1+2*len(pods) {
		t.Fatalf("peer Secret keys %v", keysOf(peer.Data))
	}
	if _, err := pki.ParseCA(e.secret("cred-ca").Data["ca.crt"], e.secret("cred-ca").Data["ca.key"]); err != nil {
		t.Fatalf("CA Secret: %v", err)
	}
	if lines := strings.Fields(string(e.secret("cred-gossip").Data["keyring"])); len(lines) != 1 {
		t.Fatalf("keyring has %d keys", len(lines))
	} else if k, err := base64.StdEncoding.DecodeString(lines[0]); err != nil || len(k) != 32 {
		t.Fatalf("gossip key: %d bytes, %v", len(k), err)
	}

	// Mounted files and flags.
	tmpl := e.sts("cred").Spec.Template
	secrets := map[string]string{}
	for _, v := range tmpl.Spec.Volumes {
		if v.Secret != nil {
			secrets[v.Secret.SecretName] = v.Name
		}
	}
	if secrets["cred-peer-tls"] == "" || secrets["cred-gossip"] == "" || secrets["cred-ca"] != "" {
		t.Fatalf("pod Secret volumes %v: want the peer and gossip Secrets, never the CA", secrets)
	}
	mounts := map[string]string{}
	for _, m := range tmpl.Spec.Containers[0].VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	args := strings.Join(tmpl.Spec.Containers[0].Args, " ")
	for _, want := range []string{
		"--peer-ca-file " + mounts[secrets["cred-peer-tls"]] + "/ca.crt",
		"--peer-cert-file " + mounts[secrets["cred-peer-tls"]] + "/$(POD_NAME).crt",
		"--peer-key-file " + mounts[secrets["cred-peer-tls"]] + "/$(POD_NAME).key",
		"--gossip-keyring-file " + mounts[secrets["cred-gossip"]] + "/keyring",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if strings.Contains(args, "--insecure") {
		t.Errorf("the operator rendered --insecure: %q", args)
	}

	// Nothing changes before 2/3 of the lifetime...
	now = now.Add(59 * time.Hour)
	e.reconcile("cred")
	if got := leaf(e.secret("cred-peer-tls").Data["cred-0.crt"]); !got.Equal(certs["cred-0"]) {
		t.Fatalf("certificate reissued at 59h of 90h")
	}
	// ...after it, every certificate is renewed (a new key), still valid for
	// the peers. (pki issues from the real clock, so the new NotAfter is
	// checked against the real time.)
	now = now.Add(2 * time.Hour)
	e.reconcile("cred")
	renewed := verifyPeerCerts(t, e.secret("cred-peer-tls"), pods, time.Now())
	for _, pod := range pods {
		if renewed[pod].Equal(certs[pod]) || renewed[pod].NotAfter.Before(certs[pod].NotAfter) {
			t.Fatalf("%s not renewed at 61h of 90h (NotAfter %s)", pod, renewed[pod].NotAfter)
		}
	}
	c := e.get("cred")
	if c.Status.Security.CertificatesNotAfter == nil || c.Status.Security.CANotAfter == nil {
		t.Fatalf("status.security %+v", c.Status.Security)
	}

	// Scale-up: the next pod's certificate exists before the StatefulSet grows.
	e.modify("cred", func(c *imv1.IMCluster) { c.Spec.Replicas = 4 })
	e.reconcile("cred")
	verifyPeerCerts(t, e.secret("cred-peer-tls"), append(pods, "cred-3"), time.Now())
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestOperatorGossipKeyRotation: install the new key, make it primary,
// remove the old one, each step only once every node reports the keyring of
// the previous one.
func TestOperatorGossipKeyRotation(t *testing.T) {
	e := newEnv(t)
	e.create(e.cluster("gk", 3))
	e.converge("gk", 40)
	e.syncCreds("gk")
	old := strings.Fields(string(e.secret("gk-gossip").Data["keyring"]))
	if len(old) != 1 {
		t.Fatalf("keyring %v", old)
	}
	e.modify("gk", func(c *imv1.IMCluster) { c.Spec.Security.GossipKeyRotation = 1 })

	steps := []func(lines []string) error{
		func(l []string) error { // installed beside the primary
			if len(l) != 2 || l[0] != old[0] || l[1] == old[0] {
				return fmt.Errorf("after install: %v", l)
			}
			return nil
		},
		func(l []string) error { // new key primary
			if len(l) != 2 || l[1] != old[0] {
				return fmt.Errorf("after promote: %v", l)
			}
			return nil
		},
		func(l []string) error { // old key removed
			if len(l) != 1 || l[0] == old[0] {
				return fmt.Errorf("after remove: %v", l)
			}
			return nil
		},
	}
	for i, check := range steps {
		e.reconcile("gk")
		lines := strings.Fields(string(e.secret("gk-gossip").Data["keyring"]))
		if err := check(lines); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		// Until the nodes report the new keyring, the next step waits.
		e.reconcile("gk")
		if again := strings.Fields(string(e.secret("gk-gossip").Data["keyring"])); !slices.Equal(again, lines) {
			t.Fatalf("step %d: advanced to %v before the nodes reported %v", i, again, lines)
		}
		if c := e.get("gk"); !strings.Contains(c.Status.Security.Rotation, "waiting for gk-0") && i < 2 {
			t.Fatalf("step %d: status.security.rotation %q", i, c.Status.Security.Rotation)
		}
		e.syncCreds("gk")
	}
	e.reconcile("gk")
	if c := e.get("gk"); c.Status.Security.GossipKeyRotation != 1 {
		t.Fatalf("status.security %+v, want gossipKeyRotation 1", c.Status.Security)
	}
	e.reconcile("gk")
	if lines := strings.Fields(string(e.secret("gk-gossip").Data["keyring"])); len(lines) != 1 {
		t.Fatalf("a finished rotation started again: %v", lines)
	}
}

// TestOperatorCARotation: the new CA is trusted beside the old one, node
// certificates are reissued once every node trusts it, the old CA is dropped
// once every node serves a new certificate.
func TestOperatorCARotation(t *testing.T) {
	e := newEnv(t)
	e.create(e.cluster("car", 3))
	e.converge("car", 40)
	e.syncCreds("car")
	oldCA := leaf(e.secret("car-ca").Data["ca.crt"])
	oldCerts := verifyPeerCerts(t, e.secret("car-peer-tls"), []string{"car-0", "car-1", "car-2"}, time.Now())
	e.modify("car", func(c *imv1.IMCluster) { c.Spec.Security.CARotation = 1 })

	trusted := func() []*x509.Certificate {
		certs, err := pki.ParseCertificates(e.secret("car-peer-tls").Data["ca.crt"])
		if err != nil {
			t.Fatal(err)
		}
		return certs
	}
	e.reconcile("car") // new CA signs, both trusted
	e.reconcile("car") // credentials phase: the peer Secret gets both
	if tr := trusted(); len(tr) != 2 || !tr[1].Equal(oldCA) {
		t.Fatalf("trust bundle during rotation: %d certificates", len(tr))
	}
	// Node certificates stay on the old CA until every node trusts the new one.
	for range 2 {
		e.reconcile("car")
	}
	cur := verifyPeerCerts(t, e.secret("car-peer-tls"), []string{"car-0", "car-1", "car-2"}, time.Now())
	if !cur["car-0"].Equal(oldCerts["car-0"]) {
		t.Fatalf("certificates reissued before the nodes trusted the new CA")
	}
	e.syncCreds("car")
	e.reconcile("car") // step reissue
	e.reconcile("car") // certificates reissued by the new CA
	newCA := leaf(e.secret("car-ca").Data["ca.crt"])
	cur = verifyPeerCerts(t, e.secret("car-peer-tls"), []string{"car-0", "car-1", "car-2"}, time.Now())
	for pod, cert := range cur {
		if cert.CheckSignatureFrom(newCA) != nil {
			t.Fatalf("%s not reissued by the new CA", pod)
		}
	}
	// The old CA stays trusted until every node serves its new certificate.
	e.reconcile("car")
	if len(trusted()) != 2 {
		t.Fatalf("old CA dropped before the nodes loaded their new certificates")
	}
	e.syncCreds("car")
	e.reconcile("car")
	e.reconcile("car")
	if tr := trusted(); len(tr) != 1 || !tr[0].Equal(newCA) {
		t.Fatalf("after rotation the trust bundle has %d certificates", len(tr))
	}
	if c := e.get("car"); c.Status.Security.CARotation != 1 {
		t.Fatalf("status.security %+v, want caRotation 1", c.Status.Security)
	}
}
