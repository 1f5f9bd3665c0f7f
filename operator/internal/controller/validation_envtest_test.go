//go:build envtest

package controller

import (
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

func TestOperatorCRDValidationCreate(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name    string
		mutate  func(*imv1.IMCluster)
		wantErr string // empty: valid
	}{
		{"defaults", func(*imv1.IMCluster) {}, ""},
		{"rf equals replicas", func(c *imv1.IMCluster) { c.Spec.Replicas, c.Spec.ReplicationFactor = 3, 3 }, ""},
		{"rf above replicas", func(c *imv1.IMCluster) { c.Spec.Replicas, c.Spec.ReplicationFactor = 2, 3 },
			"replicationFactor must be <= replicas"},
		{"write quorum equals rf", func(c *imv1.IMCluster) { c.Spec.WriteQuorum = 3 }, ""},
		{"write quorum above rf", func(c *imv1.IMCluster) { c.Spec.WriteQuorum = 4; c.Spec.Replicas = 5 },
			"writeQuorum must be <= replicationFactor"},
		{"zero replicas", func(c *imv1.IMCluster) { c.Spec.Replicas, c.Spec.ReplicationFactor, c.Spec.WriteQuorum = -1, 1, 1 },
			"spec.replicas"},
		{"too many shards", func(c *imv1.IMCluster) { c.Spec.Shards = 70000 }, "spec.shards"},
		{"bad service type", func(c *imv1.IMCluster) { c.Spec.Service.Type = "ExternalName" }, "spec.service.type"},
		{"bad reclaim policy", func(c *imv1.IMCluster) { c.Spec.Storage.ReclaimPolicy = "Recycle" }, "spec.storage.reclaimPolicy"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.cluster("v"+string(rune('a'+i)), 3, tt.mutate)
			err := e.c.Create(e.ctx, c)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("valid object rejected: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("invalid object accepted")
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not say %q", err, tt.wantErr)
			}
		})
	}
	// Defaults are applied by the API server.
	c := e.get("va")
	if c.Spec.Storage.Size == nil || c.Spec.Storage.Size.String() != "10Gi" || c.Spec.Storage.ReclaimPolicy != imv1.ReclaimRetain ||
		c.Spec.Service.Type != "ClusterIP" || c.Spec.PodDisruptionBudget.Enabled == nil || !*c.Spec.PodDisruptionBudget.Enabled {
		t.Fatalf("defaults not applied: %+v", c.Spec)
	}
}

func TestOperatorCRDValidationUpdate(t *testing.T) {
	e := newEnv(t)
	e.create(e.cluster("upd", 3, func(c *imv1.IMCluster) {
		c.Spec.Storage.Size = ptr.To(resource.MustParse("10Gi"))
		c.Spec.Storage.StorageClassName = ptr.To("fast")
	}))
	tests := []struct {
		name    string
		mutate  func(*imv1.IMCluster)
		wantErr string
	}{
		{"shards immutable", func(c *imv1.IMCluster) { c.Spec.Shards = 32 }, "shards is immutable"},
		{"storage shrinks", func(c *imv1.IMCluster) { c.Spec.Storage.Size = ptr.To(resource.MustParse("5Gi")) }, "storage.size can only grow"},
		{"storage class changes", func(c *imv1.IMCluster) { c.Spec.Storage.StorageClassName = ptr.To("slow") },
			"storageClassName is immutable"},
		{"scale below rf", func(c *imv1.IMCluster) { c.Spec.Replicas = 2 }, "replicationFactor must be <= replicas"},
		{"rf above replicas", func(c *imv1.IMCluster) { c.Spec.ReplicationFactor = 4 }, "replicationFactor must be <= replicas"},
		{"write quorum above rf", func(c *imv1.IMCluster) { c.Spec.WriteQuorum = 4 }, "writeQuorum must be <= replicationFactor"},
		{"storage grows", func(c *imv1.IMCluster) { c.Spec.Storage.Size = ptr.To(resource.MustParse("20Gi")) }, ""},
		{"storage grows across units", func(c *imv1.IMCluster) { c.Spec.Storage.Size = ptr.To(resource.MustParse("1Ti")) }, ""},
		{"scale up", func(c *imv1.IMCluster) { c.Spec.Replicas = 5 }, ""},
		{"version change", func(c *imv1.IMCluster) { c.Spec.Version = "1.1.0" }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.get("upd")
			tt.mutate(c)
			err := e.c.Update(e.ctx, c)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("valid update rejected: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("invalid update accepted")
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not say %q", err, tt.wantErr)
			}
		})
	}
	if c := e.get("upd"); c.Spec.Storage.Size == nil || c.Spec.Storage.Size.String() != "1Ti" || c.Spec.Shards != 16 {
		t.Fatalf("after updates: size %s shards %d", c.Spec.Storage.Size.String(), c.Spec.Shards)
	}
}

func TestOperatorCRDScaleSubresource(t *testing.T) {
	e := newEnv(t)
	c := e.create(e.cluster("sc", 3))
	scale := &autoscalingv1.Scale{}
	if err := e.c.SubResource("scale").Get(e.ctx, c, scale); err != nil {
		t.Fatalf("get scale: %v", err)
	}
	if scale.Spec.Replicas != 3 {
		t.Fatalf("scale replicas %d", scale.Spec.Replicas)
	}
	scale.Spec.Replicas = 5
	if err := e.c.SubResource("scale").Update(e.ctx, c, client.WithSubResourceBody(scale)); err != nil {
		t.Fatalf("scale to 5: %v", err)
	}
	if got := e.get("sc").Spec.Replicas; got != 5 {
		t.Fatalf("spec.replicas %d after scale", got)
	}
	if err := e.c.SubResource("scale").Get(e.ctx, c, scale); err != nil {
		t.Fatalf("get scale: %v", err)
	}
	scale.Spec.Replicas = 2
	err := e.c.SubResource("scale").Update(e.ctx, c, client.WithSubResourceBody(scale))
	if err == nil || !strings.Contains(err.Error(), "replicationFactor must be <= replicas") {
		t.Fatalf("scale below replicationFactor: %v", err)
	}
}
