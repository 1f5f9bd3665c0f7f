// Package v1 contains the IMCluster API (group imcluster.io, version v1).
//
// It owns the Go types, their kubebuilder markers and CEL validation rules;
// zz_generated.deepcopy.go and the CRD under config/crd/bases are generated
// from them by `make generate manifests`. It holds no controller logic.
//
// +kubebuilder:object:generate=true
// +groupName=imcluster.io
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "imcluster.io", Version: "v1"}

	// SchemeBuilder registers the types of this package.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this package to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &IMCluster{}, &IMClusterList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
