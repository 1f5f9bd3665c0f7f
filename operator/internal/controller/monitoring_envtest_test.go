//go:build envtest

package controller

import (
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	imv1 "github.com/imcluster/imcluster/api/v1"
)

// TestOperatorServiceMonitor installs the ServiceMonitor CRD into the shared
// API server halfway; no other test enables monitoring.
func TestOperatorServiceMonitor(t *testing.T) {
	e := newEnv(t)
	e.create(e.cluster("mon", 3, func(c *imv1.IMCluster) {
		c.Spec.Monitoring = imv1.MonitoringSpec{ServiceMonitor: true, Labels: map[string]string{"release": "prom"}}
	}))

	// Without the CRD: reported, nothing else blocked.
	e.reconcile("mon")
	c := e.get("mon")
	if d := cond(c, imv1.ConditionDegraded); d.Status != metav1.ConditionTrue || d.Reason != "ServiceMonitorUnavailable" {
		t.Fatalf("Degraded %+v", d)
	}
	if e.stsReplicas("mon") != 1 {
		t.Fatalf("StatefulSet not created")
	}

	// With the CRD: the ServiceMonitor is made, owned and labelled.
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "servicemonitors.monitoring.coreos.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "monitoring.coreos.com",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "servicemonitors", Singular: "servicemonitor",
				Kind: "ServiceMonitor", ListKind: "ServiceMonitorList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: new(true)}}}},
		},
	}
	if err := e.c.Create(e.ctx, crd); err != nil {
		t.Fatalf("create ServiceMonitor CRD: %v", err)
	}
	// A fresh client (and REST mapper) per attempt: discovery of a new CRD
	// takes a moment.
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		hc, err := rest.HTTPClientFor(testCfg)
		if err != nil {
			return err
		}
		mapper, err := apiutil.NewDynamicRESTMapper(testCfg, hc)
		if err != nil {
			return err
		}
		if _, err := mapper.RESTMapping(serviceMonitorGVK.GroupKind(), "v1"); err != nil {
			return err
		}
		cl, err := client.New(testCfg, client.Options{Scheme: testScheme, Mapper: mapper})
		if err != nil {
			return err
		}
		e.r.Client = cl
		return nil
	})
	e.reconcile("mon")
	sm := &unstructured.Unstructured{}
	sm.SetGroupVersionKind(serviceMonitorGVK)
	if err := e.r.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "mon"}, sm); err != nil {
		t.Fatalf("get ServiceMonitor: %v", err)
	}
	if sm.GetLabels()["release"] != "prom" || len(sm.GetOwnerReferences()) != 1 {
		t.Fatalf("ServiceMonitor metadata %+v", sm.Object["metadata"])
	}
	eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if len(eps) != 1 || eps[0].(map[string]any)["port"] != "admin" {
		t.Fatalf("endpoints %+v", eps)
	}
	if c := e.get("mon"); cond(c, imv1.ConditionDegraded).Reason == "ServiceMonitorUnavailable" {
		t.Fatalf("still reported unavailable: %+v", cond(c, imv1.ConditionDegraded))
	}
}
