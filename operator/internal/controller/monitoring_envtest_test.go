//go:build envtest

package controller

import (
	"strings"
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
		c.Spec.Monitoring = imv1.MonitoringSpec{ServiceMonitor: true, PrometheusRule: true, Labels: map[string]string{"release": "prom"}}
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

	// With the CRDs: the ServiceMonitor and the PrometheusRule are made, owned and labelled.
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		plural := strings.ToLower(kind) + "s"
		crd := &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: plural + ".monitoring.coreos.com"},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: "monitoring.coreos.com",
				Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: plural, Singular: strings.ToLower(kind),
					Kind: kind, ListKind: kind + "List"},
				Scope: apiextensionsv1.NamespaceScoped,
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object", XPreserveUnknownFields: new(true)}}}},
			},
		}
		if err := e.c.Create(e.ctx, crd); err != nil {
			t.Fatalf("create %s CRD: %v", kind, err)
		}
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
		if _, err := mapper.RESTMapping(prometheusRuleGVK.GroupKind(), "v1"); err != nil {
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
	if rl, _, _ := unstructured.NestedSlice(eps[0].(map[string]any), "relabelings"); len(rl) != 1 ||
		rl[0].(map[string]any)["targetLabel"] != "job" || rl[0].(map[string]any)["replacement"] != "imnode" {
		t.Fatalf("endpoint relabelings %+v, want job=imnode", rl)
	}
	pr := &unstructured.Unstructured{}
	pr.SetGroupVersionKind(prometheusRuleGVK)
	if err := e.r.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "mon"}, pr); err != nil {
		t.Fatalf("get PrometheusRule: %v", err)
	}
	if pr.GetLabels()["release"] != "prom" || len(pr.GetOwnerReferences()) != 1 {
		t.Fatalf("PrometheusRule metadata %+v", pr.Object["metadata"])
	}
	groups, _, _ := unstructured.NestedSlice(pr.Object, "spec", "groups")
	alerts := 0
	for _, g := range groups {
		rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
		for _, r := range rules {
			alerts++
			if expr := r.(map[string]any)["expr"].(string); !strings.Contains(expr, `namespace="`+e.ns+`"`) {
				t.Errorf("rule %v not scoped to namespace %s: %s", r.(map[string]any)["alert"], e.ns, expr)
			}
		}
	}
	if alerts < 8 {
		t.Fatalf("PrometheusRule has %d alerts", alerts)
	}
	if c := e.get("mon"); cond(c, imv1.ConditionDegraded).Reason == "ServiceMonitorUnavailable" {
		t.Fatalf("still reported unavailable: %+v", cond(c, imv1.ConditionDegraded))
	}
}
